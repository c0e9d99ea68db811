//! The new binary's `--check` before an upgrade (superd.8, UPGRADING), run
//! while the loop goes on serving: started under a "clone" child the
//! loop's `waitpid(-1)` sweep cannot reap (`crate::sys::spawn_clone_child`),
//! watched through its pidfd and a timerfd at its deadline, and judged once
//! it has exited or the deadline has passed (then it is killed).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{CHECK_TIMEOUT, Context, ENV_STATE};

/// Without a pidfd, how often the check is looked at.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// A `--check` that runs.
#[derive(Debug)]
pub struct Check {
    /// `None` once reaped: never waited for again (its number may be
    /// another child's by then).
    pid: Option<Pid>,
    /// Readable once it has exited (where the kernel gives one).
    pidfd: Option<OwnedFd>,
    /// Readable at the deadline (or every POLL_EVERY without a pidfd).
    timer: TimerFd,
    /// Its stderr: a memfd, so that a check with much to say never blocks
    /// on a pipe nobody reads until it exits.
    stderr: File,
    deadline: Instant,
}

impl Check {
    /// Starts `ctx.exe --check` with superd's own arguments and
    /// environment (the upgrade variable removed).
    pub fn start(ctx: &Context) -> Result<Check, String> {
        let stderr = nix::sys::memfd::memfd_create(
            c"superd-check",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .map(File::from)
        .map_err(|e| format!("memfd_create: {e}"))?;
        let null = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        let path = CString::new(ctx.exe.as_os_str().as_bytes())
            .map_err(|_| "the binary's path holds a NUL".to_string())?;
        // What the exec would say, said here: the child can only exit 127.
        nix::unistd::access(path.as_c_str(), nix::unistd::AccessFlags::X_OK)
            .map_err(|e| format!("{}: {}", ctx.exe.display(), e.desc()))?;
        let mut args = vec![path.clone(), CString::from(c"--check")];
        args.extend(
            ctx.argv
                .iter()
                .skip(1)
                .filter_map(|a| CString::new(a.as_bytes()).ok()),
        );
        let env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k != ENV_STATE)
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(|e| format!("timerfd_create: {e}"))?;
        let (pid, pidfd) = crate::sys::spawn_clone_child(
            &path,
            &ptrs(&args),
            &ptrs(&env),
            null.as_fd(),
            stderr.as_fd(),
        )
        .map_err(|e| format!("{}: {e}", ctx.exe.display()))?;
        let every = if pidfd.is_some() {
            Expiration::OneShot(TimeSpec::from_duration(CHECK_TIMEOUT))
        } else {
            Expiration::Interval(TimeSpec::from_duration(POLL_EVERY))
        };
        let check = Check {
            pid: Some(Pid::from_raw(pid)),
            pidfd,
            timer,
            stderr,
            deadline: Instant::now() + CHECK_TIMEOUT,
        };
        check
            .timer
            .set(every, TimerSetTimeFlags::empty())
            .map_err(|e| format!("timerfd_settime: {e}"))?;
        Ok(check)
    }

    /// The descriptors the loop watches for readability: the pidfd (if
    /// any) and the timer.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut v: Vec<RawFd> = self.pidfd.iter().map(|f| f.as_raw_fd()).collect();
        v.push(self.timer.as_fd().as_raw_fd());
        v
    }

    /// What the check says once it has exited (`Ok` for a pass, else why
    /// not), or, past its deadline, that it took too long (it is killed
    /// and reaped); `None` while it runs.
    pub fn verdict(&mut self, now: Instant) -> Option<Result<(), String>> {
        let _ = self.timer.wait();
        let pid = self.pid?;
        let status = match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) if now < self.deadline => return None,
            Ok(WaitStatus::StillAlive) => {
                self.kill();
                return Some(Err(format!(
                    "--check took longer than {}s",
                    CHECK_TIMEOUT.as_secs()
                )));
            }
            Ok(WaitStatus::Exited(_, 0)) => {
                self.pid = None;
                return Some(Ok(()));
            }
            Ok(WaitStatus::Exited(_, code)) => format!("exit status: {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                format!("signal: {} ({})", sig as i32, sig.as_str())
            }
            Ok(_) => return None,
            Err(e) => {
                self.pid = None;
                return Some(Err(format!("--check: {e}")));
            }
        };
        self.pid = None;
        Some(Err(self.failed(&status)))
    }

    /// `--check failed (STATUS) LAST-LINE-OF-ITS-STDERR`.
    fn failed(&mut self, status: &str) -> String {
        let len = self.stderr.seek(std::io::SeekFrom::End(0)).unwrap_or(0);
        let _ = self
            .stderr
            .seek(std::io::SeekFrom::Start(len.saturating_sub(4096)));
        let mut bytes = Vec::new();
        let _ = self.stderr.read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        format!("--check failed ({status}) {last}")
            .trim_end()
            .to_string()
    }

    /// SIGKILL and reap (a killed process exits at once).
    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
        }
    }
}

impl Drop for Check {
    /// A check still running when superd stops is killed with it.
    fn drop(&mut self) {
        self.kill();
    }
}
