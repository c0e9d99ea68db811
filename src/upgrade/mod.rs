//! Upgrade in place (superd.8, UPGRADING): on SIGUSR2 the binary at the
//! path superd was started from is checked (`--check`, bounded in time,
//! while the loop serves on: [`check`]),
//! then the state is written to a memfd, and superd `execve`s that binary in
//! the same process. The new image restores the state; if it cannot, it
//! executes the previous binary again (kept open) with the same state.
//! What the state holds is [`state`]; how the loop fills and takes it is
//! the event loop's (its `upgrade` part).

pub mod check;
pub mod state;

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

pub use state::State;

/// The variable that tells a starting image it is an upgrade:
/// `STATE_FD,PREVIOUS_EXE_FD` (the second may be empty).
pub const ENV_STATE: &str = "SUPERD_UPGRADE_STATE";
/// Set on a rollback: why the new image could not restore the state.
pub const ENV_FAILED: &str = "SUPERD_UPGRADE_FAILED";
/// How long the new binary's `--check` may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What superd keeps from its start for an upgrade.
#[derive(Debug)]
pub struct Context {
    /// The path superd was started from: the binary an upgrade runs.
    pub exe: PathBuf,
    /// The running binary, open (for a rollback from the next image).
    pub running: Option<OwnedFd>,
    /// superd's argv, as it was started.
    pub argv: Vec<OsString>,
    /// `NOTIFY_SOCKET` as found at start.
    pub notify_socket: Option<String>,
    /// The pid file's descriptor and path.
    pub pidfile: Option<(RawFd, String)>,
    /// The new binary's `--check` while it runs, and the loop's tokens
    /// for its descriptors.
    pub check: Option<(check::Check, Vec<mio::Token>)>,
}

impl Context {
    /// The context of a fresh start (or of a restored image: `exe` from
    /// the state).
    pub fn at_start(exe: Option<PathBuf>, notify_socket: Option<String>) -> Context {
        let exe = exe
            .or_else(|| std::fs::read_link("/proc/self/exe").ok())
            .unwrap_or_default();
        // /proc/self/exe opens the running binary even once its path is
        // replaced (the `(deleted)` inode).
        let running = File::open("/proc/self/exe").ok().map(OwnedFd::from);
        Context {
            exe,
            running,
            argv: std::env::args_os().collect(),
            notify_socket,
            pidfile: None,
            check: None,
        }
    }
}

/// Writes `state` to a memfd that survives exec and returns it.
pub fn write_state(state: &State) -> Result<OwnedFd, String> {
    let fd =
        nix::sys::memfd::memfd_create(c"superd-state", nix::sys::memfd::MemFdCreateFlag::empty())
            .map_err(|e| format!("memfd_create: {e}"))?;
    let mut f = File::from(fd);
    f.write_all(&state.to_bytes())
        .and_then(|()| f.rewind())
        .map_err(|e| format!("writing the state: {e}"))?;
    Ok(OwnedFd::from(f))
}

/// Sets or clears close-on-exec on `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) {
    let flag = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    let _ = fcntl(fd, FcntlArg::F_SETFD(flag));
}

/// superd's environment with the upgrade variables set (or removed).
fn environment(state_fd: RawFd, previous: Option<RawFd>, failed: Option<&str>) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != ENV_STATE && k != ENV_FAILED)
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    let prev = previous.map(|p| p.to_string()).unwrap_or_default();
    env.extend(CString::new(format!("{ENV_STATE}={state_fd},{prev}")).ok());
    if let Some(why) = failed {
        env.extend(CString::new(format!("{ENV_FAILED}={}", why.replace('\0', " "))).ok());
    }
    env
}

fn argv(ctx: &Context) -> Vec<CString> {
    ctx.argv
        .iter()
        .filter_map(|a| CString::new(a.clone().into_vec()).ok())
        .collect()
}

/// Executes the new binary with the state; returns only on failure, with
/// the state fd closed and every state fd close-on-exec again.
pub fn exec_new(ctx: &Context, state: &State) -> String {
    let memfd = match write_state(state) {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    let fds = state.fds();
    for &fd in &fds {
        set_cloexec(fd, false);
    }
    let previous = ctx.running.as_ref().map(|f| f.as_raw_fd());
    if let Some(p) = previous {
        set_cloexec(p, false);
    }
    let path = match CString::new(ctx.exe.clone().into_os_string().into_vec()) {
        Ok(p) => p,
        Err(_) => return "the binary's path holds a NUL".into(),
    };
    crate::logging::flush();
    let err = nix::unistd::execve(
        &path,
        &argv(ctx),
        &environment(memfd.as_raw_fd(), previous, None),
    )
    .err()
    .map_or_else(String::new, |e| {
        format!("execve {}: {e}", ctx.exe.display())
    });
    for &fd in &fds {
        set_cloexec(fd, true);
    }
    if let Some(p) = previous {
        set_cloexec(p, true);
    }
    err
}

/// What a starting image finds in its environment after an upgrade.
pub struct Incoming {
    /// The state document, not yet parsed.
    pub memfd: OwnedFd,
    /// The binary that wrote it (for a rollback); `None` on a rollback.
    pub previous: Option<OwnedFd>,
    /// Set on a rollback: why the new image failed.
    pub failed: Option<String>,
}

/// Takes the upgrade variables out of the environment, if any.
pub fn take_from_env() -> Option<Incoming> {
    let value = std::env::var(ENV_STATE).ok()?;
    let failed = std::env::var(ENV_FAILED).ok();
    crate::sys::remove_env(ENV_STATE);
    crate::sys::remove_env(ENV_FAILED);
    let (state, prev) = value.split_once(',').unwrap_or((&value, ""));
    let memfd = crate::sys::inherited_fd(state.parse().ok()?)?;
    set_cloexec(memfd.as_raw_fd(), true);
    let previous = prev.parse().ok().and_then(crate::sys::inherited_fd);
    if let Some(p) = &previous {
        set_cloexec(p.as_raw_fd(), true);
    }
    Some(Incoming {
        memfd,
        previous,
        failed,
    })
}

impl Incoming {
    /// Reads and checks the state document.
    pub fn read(&self) -> Result<State, String> {
        let dup = self
            .memfd
            .try_clone()
            .map_err(|e| format!("state fd: {e}"))?;
        let mut f = File::from(dup);
        let _ = f.rewind();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| format!("reading the state: {e}"))?;
        State::from_bytes(&bytes).map_err(|e| e.to_string())
    }

    /// The new image cannot restore the state: executes the previous
    /// binary with it. Returns only if that is impossible.
    pub fn roll_back(self, why: &str) -> String {
        let Some(previous) = self.previous else {
            return "no previous binary to go back to".into();
        };
        // The descriptors the state names are still open and inheritable:
        // nothing was restored.
        let state_fd = self.memfd.into_raw_fd();
        set_cloexec(state_fd, false);
        let args: Vec<CString> = std::env::args_os()
            .filter_map(|a| CString::new(a.into_vec()).ok())
            .collect();
        crate::logging::flush();
        let err = nix::unistd::fexecve(
            previous.as_raw_fd(),
            &args,
            &environment(state_fd, None, Some(why)),
        )
        .err()
        .map_or_else(String::new, |e| format!("fexecve: {e}"));
        // The fd is ours (into_raw_fd above).
        let _ = nix::unistd::close(state_fd);
        err
    }
}

/// Copies of the descriptors a restore takes, so that a failed restore can
/// put them back where the state names them for the rollback.
pub struct Copies(Vec<(RawFd, OwnedFd)>);

impl Copies {
    pub fn of(state: &State) -> Copies {
        Copies(
            state
                .fds()
                .into_iter()
                .filter_map(|fd| {
                    let b = crate::sys::inherited_fd(fd)?;
                    let copy = b.try_clone().ok();
                    // Not ours yet: the state's number stays open.
                    let _ = b.into_raw_fd();
                    Some((fd, copy?))
                })
                .collect(),
        )
    }

    /// Every descriptor back at its number, inheritable, for the rollback.
    pub fn put_back(&self) {
        for (fd, copy) in &self.0 {
            let _ = nix::unistd::dup2(copy.as_raw_fd(), *fd);
        }
    }
}

/// Reads the state-version override now, and removes it from the
/// environment (see [`state::version`]).
pub fn settle_version() {
    let _ = state::version();
    crate::sys::remove_env("SUPERD_STATE_VERSION");
}

/// Takes the descriptor `fd` the state names, and makes it close-on-exec
/// again.
pub fn take_fd(fd: RawFd) -> Option<OwnedFd> {
    let owned = crate::sys::inherited_fd(fd)?;
    set_cloexec(owned.as_raw_fd(), true);
    Some(owned)
}

/// The version string logged as `upgraded from=… to=…`.
pub fn this_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
