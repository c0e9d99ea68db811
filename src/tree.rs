//! Everything a connection's child starts, and how superd ends it (see
//! "Process trees" in superd.8).
//!
//! superd is a child subreaper: whatever a child starts and leaves behind
//! (a daemon that double-forks, a session that `setsid`s) comes back to
//! superd when its parent ends, and is reaped by it. Where the host allows
//! it, each connection's child also starts in a cgroup v2 of its own
//! (`clone3` with `CLONE_INTO_CGROUP`), which holds its whole tree whatever
//! sessions and groups it makes; `cgroup.kill` ends all of it at once.

use std::cell::Cell;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use log::warn;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How superd follows a connection's tree.
#[derive(Debug)]
pub struct Fence {
    /// `None`: the subreaper alone.
    cgroups: Option<Cgroups>,
    /// Why there are no cgroups (for the startup log).
    why_not: String,
}

#[derive(Debug)]
struct Cgroups {
    /// superd's own directory of connection cgroups, removed at exit.
    base: PathBuf,
    next: u64,
    /// Empty connection cgroups whose descriptors are held (see
    /// [`HELD`]), handed out first: no syscall to prepare one.
    ready: Vec<ConnCgroup>,
    /// Other empty connection cgroups kept for the next children: a mkdir
    /// and an rmdir in cgroupfs cost more than the rest of a spawn.
    pool: Vec<ConnCgroup>,
    /// How many connection cgroups hold their descriptors now, and how
    /// many were made so at start: one lost (its child left something
    /// running) is replaced by the next one prepared, never more.
    held: Rc<Cell<usize>>,
    held_at_start: usize,
    /// A failed mkdir was logged (once: the next ones say the same).
    warned: bool,
}

impl Fence {
    /// Makes superd a child subreaper and finds a cgroup v2 directory it
    /// may create connection cgroups in.
    pub fn start() -> Fence {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            warn!("cannot become a subreaper error=\"{}\"", e.desc());
        }
        match Cgroups::find() {
            Ok(mut c) => {
                c.hold_at_start();
                Fence {
                    cgroups: Some(c),
                    why_not: String::new(),
                }
            }
            Err(why_not) => Fence {
                cgroups: None,
                why_not,
            },
        }
    }

    /// The fields of the `ready` line: `tree=cgroup cgroup=PATH`, or
    /// `tree=subreaper cgroup_error="…"`.
    pub fn describe(&self) -> String {
        match &self.cgroups {
            Some(c) => format!("tree=cgroup cgroup={}", c.base.display()),
            None => format!("tree=subreaper cgroup_error={:?}", self.why_not),
        }
    }

    /// After an upgrade: the connection cgroups the previous image made
    /// and no restored child is in are pooled (or removed), and new ones
    /// are numbered past every one there.
    pub fn adopt_existing(&mut self, in_use: &[&Path]) {
        let Some(c) = self.cgroups.as_mut() else {
            return;
        };
        let Ok(entries) = fs::read_dir(&c.base) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let Some(n) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('c'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            c.next = c.next.max(n);
            let path = e.path();
            if in_use.contains(&path.as_path()) || c.ready.iter().any(|r| r.path == path) {
                continue;
            }
            let cg = ConnCgroup::at(path);
            if cg.populated() || c.pool.len() >= POOL_MAX {
                // Something the previous image no longer tracked: left
                // for the kernel's accounting, never reused.
                if !cg.populated() {
                    cg.remove();
                }
            } else {
                c.pool.push(cg);
            }
        }
    }

    /// Whether connections get cgroups of their own (else only the
    /// subreaper holds their trees).
    pub fn has_cgroups(&self) -> bool {
        self.cgroups.is_some()
    }

    /// A new, empty cgroup for one connection (its descriptor for `clone3`
    /// is [`ConnCgroup::dir`]); `None` without cgroups, or when it cannot
    /// be made (the child then starts without one; the first failure is
    /// logged). One whose descriptors are held when there is one: no
    /// syscall; else an emptied one from the pool: no mkdir. While fewer
    /// are held than at start, the one made or taken from the pool holds
    /// its descriptors in place of one lost.
    pub fn prepare(&mut self) -> Option<ConnCgroup> {
        let c = self.cgroups.as_mut()?;
        let replace = c.held.get() < c.held_at_start;
        if !replace && let Some(cg) = c.ready.pop() {
            return Some(cg);
        }
        let hold = replace.then(|| c.held.clone());
        while let Some(cg) = c.pool.pop() {
            match ConnCgroup::open(cg.path.clone(), hold.clone()) {
                Ok(cg) => return Some(cg),
                Err(_) => {
                    cg.remove();
                }
            }
        }
        match c.make(hold) {
            Ok(cg) => Some(cg),
            Err((path, e)) => {
                c.warn_once(&path, &e.to_string());
                c.ready.pop()
            }
        }
    }

    /// A connection's cgroup after its child is reaped: kept for another
    /// child (or removed) when nothing runs in it any more; given back
    /// when something still does.
    pub fn release(&mut self, mut cg: ConnCgroup) -> Option<ConnCgroup> {
        if cg.populated() {
            // Its descriptors go: it is not reused, and the next cgroup
            // prepared holds its own in its place.
            cg.held = None;
            cg.dir = None;
            return Some(cg);
        }
        match self.cgroups.as_mut() {
            Some(c) if cg.held.is_some() => c.ready.push(cg),
            Some(c) if c.pool.len() < POOL_MAX => c.pool.push(cg),
            _ => {
                if !cg.remove() {
                    return Some(cg);
                }
            }
        }
        None
    }

    /// `clone3` refused the cgroup `cg` with `errno`; logged like a failed
    /// mkdir (once).
    pub fn refused(&mut self, cg: &ConnCgroup, errno: nix::errno::Errno) {
        if let Some(c) = self.cgroups.as_mut() {
            c.warn_once(&cg.path, errno.desc());
        }
    }
}

/// Empty connection cgroups kept for reuse at the most (besides the
/// [`HELD`] ones).
const POOL_MAX: usize = 128;

/// Connection cgroups made at start whose directory and `cgroup.events`
/// descriptors superd keeps open, whether a child runs in them or they
/// wait for one: a child starts in one and is found to have left nothing
/// behind with a single pread(2), where the others cost an open and a
/// close of each. A fixed number, open from start on: superd's descriptor
/// count does not grow with the connections it has served.
const HELD: usize = 8;

impl Drop for Fence {
    fn drop(&mut self) {
        if let Some(c) = &self.cgroups {
            for cg in c.ready.iter().chain(&c.pool) {
                cg.remove();
            }
            let _ = fs::remove_dir(&c.base);
        }
    }
}

impl Cgroups {
    fn find() -> Result<Cgroups, String> {
        if !crate::sys::clone3_works() {
            return Err("no clone3".into());
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let (root, mount) = cgroup2_mount(&mountinfo).ok_or("no cgroup2 mount")?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let own = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("not in a cgroup v2")?;
        let rel = Path::new(own)
            .strip_prefix(&root)
            .map_err(|_| "own cgroup outside the cgroup2 mount")?;
        let dir = mount.join(rel);
        remove_stale(&dir);
        let base = dir.join(format!("superd.{}", std::process::id()));
        // Already there after an upgrade (superd.8, UPGRADING), with the
        // connection cgroups of the previous image in it.
        let next = match fs::create_dir(&base) {
            Ok(()) => 0,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => highest(&base),
            Err(e) => return Err(format!("{}: {e}", base.display())),
        };
        if !base.join("cgroup.kill").exists() {
            let _ = fs::remove_dir(&base);
            return Err("no cgroup.kill (Linux < 5.14)".into());
        }
        Ok(Cgroups {
            base,
            next,
            ready: Vec::new(),
            pool: Vec::new(),
            held: Rc::new(Cell::new(0)),
            held_at_start: 0,
            warned: false,
        })
    }

    /// Makes the [`HELD`] cgroups whose descriptors stay open (fewer if
    /// a mkdir fails: the first connection then says why).
    fn hold_at_start(&mut self) {
        while self.ready.len() < HELD {
            match self.make(Some(self.held.clone())) {
                Ok(cg) => self.ready.push(cg),
                Err(_) => break,
            }
        }
        self.held_at_start = self.ready.len();
    }

    /// A new connection cgroup, its directory open; its `cgroup.events`
    /// too when it is `held`.
    fn make(&mut self, held: Option<Rc<Cell<usize>>>) -> Result<ConnCgroup, (PathBuf, io::Error)> {
        self.next += 1;
        let path = self.base.join(format!("c{}", self.next));
        fs::create_dir(&path)
            .and_then(|()| {
                ConnCgroup::open(path.clone(), held).inspect_err(|_| {
                    let _ = fs::remove_dir(&path);
                })
            })
            .map_err(|e| (path, e))
    }

    fn warn_once(&mut self, path: &Path, error: &str) {
        if !self.warned {
            self.warned = true;
            warn!(
                "cannot create cgroup path={} error={}",
                crate::logging::quote(&path.display().to_string()),
                crate::logging::quote(error)
            );
        }
    }
}

/// The highest N of the connection cgroups `cN` in `base` (0: none).
fn highest(base: &Path) -> u64 {
    fs::read_dir(base)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.strip_prefix('c')?.parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Removes what a superd that is gone (killed, so it could not clean up)
/// left in `dir`: its `superd.PID` directory and the connection cgroups in
/// it, where they are empty. A directory whose pid runs is never touched.
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("superd."))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(conns) = fs::read_dir(e.path()) {
            for c in conns.filter_map(Result::ok) {
                if c.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(c.path());
                }
            }
        }
        let _ = fs::remove_dir(e.path());
    }
}

/// The root and the mount point of the cgroup2 file system in a
/// /proc/self/mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        let f: Vec<&str> = before.split(' ').collect();
        Some((unescape(f.get(3)?), unescape(f.get(4)?)))
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&out),
    ))
}

/// One connection's cgroup: its child and everything the child starts
/// (empty when a child starts in it).
///
/// It holds a descriptor of its directory (`O_PATH`) from
/// [`Fence::prepare`] to the `clone3` that starts its child in it (see
/// [`ConnCgroup::started`]); one of the [`HELD`] holds that and one of its
/// `cgroup.events` for good.
#[derive(Debug)]
pub struct ConnCgroup {
    path: PathBuf,
    dir: Option<OwnedFd>,
    held: Option<Held>,
}

/// The open `cgroup.events` of a held connection cgroup, counted in the
/// fence's number held while it is open.
#[derive(Debug)]
struct Held {
    events: fs::File,
    count: Rc<Cell<usize>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.count.set(self.count.get() - 1);
    }
}

impl ConnCgroup {
    /// Opens the directory at `path`, and its `cgroup.events` too when
    /// it is to be `held` (counted there).
    fn open(path: PathBuf, held: Option<Rc<Cell<usize>>>) -> io::Result<ConnCgroup> {
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
            .map(OwnedFd::from)?;
        let held = match held {
            Some(count) => {
                // std opens it close-on-exec: an upgraded image does not
                // inherit it (it makes held cgroups of its own).
                let events = fs::File::open(path.join("cgroup.events"))?;
                count.set(count.get() + 1);
                Some(Held { events, count })
            }
            None => None,
        };
        Ok(ConnCgroup {
            path,
            dir: Some(dir),
            held,
        })
    }

    /// Its child started in it: the directory's descriptor goes unless
    /// it is held. A new child copies every descriptor below the highest
    /// it uses (see spawn's `child.rs`), so one kept per live child at a
    /// low number would make every start dearer as children add up; the
    /// held ones are a fixed few.
    pub fn started(&mut self) {
        if self.held.is_none() {
            self.dir = None;
        }
    }

    /// The directory's descriptor, for `clone3` (`CLONE_INTO_CGROUP`);
    /// `None` once [`started`](Self::started) unless it is held.
    pub fn dir(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.dir.as_ref().map(std::os::fd::AsFd::as_fd)
    }

    /// The cgroup at `path`, carried across an upgrade (superd.8,
    /// UPGRADING).
    pub fn at(path: PathBuf) -> ConnCgroup {
        ConnCgroup {
            path,
            dir: None,
            held: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `sig` to every process in it; how many there were.
    pub fn signal(&self, sig: Signal) -> usize {
        let procs = fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
        procs
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter(|&p| kill(Pid::from_raw(p), sig).is_ok())
            .count()
    }

    /// SIGKILL to everything in it, at once (cgroup.kill).
    pub fn kill(&self) {
        let _ = fs::write(self.path.join("cgroup.kill"), "1");
    }

    /// Whether a process still runs in it (zombies do not count).
    pub fn populated(&self) -> bool {
        // A few short lines ("populated 0\nfrozen 0\n"): one read gets
        // them all; from offset 0, the kernel writes them afresh.
        let mut buf = [0u8; 128];
        let n = match &self.held {
            Some(h) => h.events.read_at(&mut buf, 0),
            None => fs::File::open(self.path.join("cgroup.events"))
                .and_then(|file| file.read_at(&mut buf, 0)),
        };
        n.is_ok_and(|n| buf[..n].split(|&b| b == b'\n').any(|l| l == b"populated 1"))
    }

    /// Removes it if it is empty; whether it is gone.
    pub fn remove(&self) -> bool {
        match fs::remove_dir(&self.path) {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }
}

/// A process seen in /proc: its pid and when it started (clock ticks
/// since boot), so that a pid taken again later is never signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stray {
    pub pid: i32,
    pub started: u64,
}

/// One line of /proc/PID/stat, the fields superd uses.
#[derive(Clone, Copy, Debug)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub zombie: bool,
    pub started: u64,
}

/// Parses /proc/PID/stat (after the command, which may hold spaces and
/// parentheses: state ppid pgrp session … starttime is the 20th).
pub fn parse_stat(pid: i32, stat: &str) -> Option<ProcInfo> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcInfo {
        pid,
        zombie: f.first()? == &"Z",
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        started: f.get(19)?.parse().ok()?,
    })
}

/// Every process in /proc now.
pub fn processes() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| parse_stat(pid, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .collect()
}

/// The live (not zombie) descendants of `root` in `table`, at any depth.
pub fn descendants(root: i32, table: &[ProcInfo]) -> Vec<ProcInfo> {
    let mut out: Vec<ProcInfo> = Vec::new();
    let mut parents = vec![root];
    while let Some(p) = parents.pop() {
        for c in table.iter().filter(|c| c.ppid == p && c.pid != root) {
            if out.iter().all(|o| o.pid != c.pid) {
                parents.push(c.pid);
                out.push(*c);
            }
        }
    }
    out.retain(|c| !c.zombie);
    out
}

/// Sends `sig` to each recorded process that is still the one recorded;
/// how many there were.
pub fn signal_strays(strays: &[Stray], sig: Signal) -> usize {
    let mut n = 0;
    for s in strays {
        let same = fs::read_to_string(format!("/proc/{}/stat", s.pid))
            .ok()
            .and_then(|st| parse_stat(s.pid, &st))
            .is_some_and(|p| p.started == s.started && !p.zombie);
        if same && kill(Pid::from_raw(s.pid), sig).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_of_a_hybrid_host() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some(("/".into(), "/sys/fs/cgroup/unified".into()))
        );
        let odd = "41 31 0:38 /a\\040b /sys/fs/cg\\134x rw shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(odd),
            Some(("/a b".into(), "/sys/fs/cg\\x".into()))
        );
        assert_eq!(cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/sda rw\n"), None);
    }

    #[test]
    fn numbering_goes_on_past_the_highest_connection_cgroup() {
        let dir = std::env::temp_dir().join(format!("superd-tree-highest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        assert_eq!(highest(&dir), 0);
        for name in ["c3", "c12", "c7", "cgroup.procs", "cx", "d99"] {
            fs::create_dir(dir.join(name)).unwrap();
        }
        assert_eq!(highest(&dir), 12);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(highest(&dir), 0);
    }

    #[test]
    fn stat_fields_after_an_odd_command() {
        let stat = "42 (a) b (c)) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let p = parse_stat(42, stat).unwrap();
        assert_eq!((p.ppid, p.pgid, p.started, p.zombie), (7, 42, 12345, false));
    }

    #[test]
    fn descendants_at_any_depth_without_zombies() {
        let p = |pid, ppid, zombie| ProcInfo {
            pid,
            ppid,
            pgid: pid,
            zombie,
            started: 0,
        };
        let table = [
            p(1, 0, false),
            p(10, 1, false),
            p(11, 10, false),
            p(12, 11, true),
            p(13, 11, false),
            p(20, 1, false),
        ];
        let mut d: Vec<i32> = descendants(10, &table).iter().map(|p| p.pid).collect();
        d.sort();
        assert_eq!(d, [11, 13]);
    }
}
