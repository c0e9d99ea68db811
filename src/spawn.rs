//! Starting a child, the child sequence, exec: the only code of superd that
//! runs between clone and `execve`. Everything it uses was built before by
//! [`crate::plan`]; a failure is reported in superd's own memory.

#![allow(unsafe_code)]

// The rule for this module: after the clone the child calls only
// async-signal-safe functions (raw syscalls through `libc`) on data prepared
// before it. It never allocates, never logs (fd 2 belongs to the client),
// never panics and never returns: it ends in `execve` or `_exit`.
//
// The child is started the way glibc's posix_spawn starts one:
// `clone(CLONE_VM | CLONE_VFORK)` on a stack of its own. It shares superd's
// memory until execve, so no page table is copied and no page faults in
// copy-on-write (fork's cost grows with the parent's mappings); superd is
// suspended until the child has exec'd or exited, so the child can read the
// plan and write its failure report straight into superd's memory. The uid
// and gid calls are raw syscalls: glibc's wrappers would try to broadcast
// them to the threads of the process whose memory the child shares.

use std::fmt;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::Pid;

use crate::plan::{ConnInfo, SpawnPlan};
use crate::service::StderrMode;

/// The step of the child sequence that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Signals,
    Setsid,
    Dup2,
    Fds,
    Rlimit,
    Nice,
    Umask,
    Chroot,
    Chdir,
    Setgroups,
    Setgid,
    Setuid,
    Verify,
    Exec,
}
// `Umask` never fails (umask(2) cannot) but keeps its place in the
// vocabulary; `Verify` reports EPERM: the ids did not stick, or a non-root
// child could become root again.

impl Step {
    /// In sequence order; the index is the code in the failure report.
    const ALL: [Step; 14] = [
        Step::Signals,
        Step::Setsid,
        Step::Dup2,
        Step::Fds,
        Step::Rlimit,
        Step::Nice,
        Step::Umask,
        Step::Chroot,
        Step::Chdir,
        Step::Setgroups,
        Step::Setgid,
        Step::Setuid,
        Step::Verify,
        Step::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Signals => "signals",
            Step::Setsid => "setsid",
            Step::Dup2 => "dup2",
            Step::Fds => "fds",
            Step::Rlimit => "rlimit",
            Step::Nice => "nice",
            Step::Umask => "umask",
            Step::Chroot => "chroot",
            Step::Chdir => "chdir",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setgid",
            Step::Setuid => "setuid",
            Step::Verify => "verify",
            Step::Exec => "exec",
        }
    }

    fn code(self) -> u32 {
        self as u32
    }

    fn from_code(code: u32) -> Option<Step> {
        Step::ALL.get(code as usize).copied()
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A child that reported a failure before exec (it exits 127).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecFailure {
    pub step: Step,
    pub errno: Errno,
}

impl fmt::Display for ExecFailure {
    /// The fields of the `exec failed` log line: `step=exec error="…"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step={} error={:?}", self.step, self.errno.desc())
    }
}

/// A started child.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    /// The read end of the child's stderr pipe (`stderr: log`), non-blocking
    /// and close-on-exec.
    pub stderr: Option<OwnedFd>,
    /// `Some` when the child failed before exec. It exits 127 and must still
    /// be reaped like any child.
    pub exec_failure: Option<ExecFailure>,
}

/// Forks and execs the plan's program on `sock` (blocking in the child) with
/// the environment for `conn`. Returns once the child has exec'd or reported
/// a failure; `Err` only when no child was started (`EAGAIN`, `ENOMEM`, or
/// `EINVAL` for a builtin's plan). Does not reap.
pub fn spawn(plan: &SpawnPlan, sock: BorrowedFd<'_>, conn: &ConnInfo) -> Result<Spawned, Errno> {
    let path = plan.path().ok_or(Errno::EINVAL)?;
    let env = plan.envp_for(conn);

    // Every fd the child dup2()s onto 0-2 must itself be >= 3, so that dup2
    // always makes a new descriptor and none is overwritten before it is
    // used. The daemon keeps 0-2 open, so the moves below almost never run.
    let sock_moved = if sock.as_raw_fd() < 3 {
        Some(dup_above_stdio(sock.as_raw_fd())?)
    } else {
        None
    };
    let sock_fd = sock_moved
        .as_ref()
        .map_or(sock.as_raw_fd(), |f| f.as_raw_fd());
    let (stderr_r, stderr_w, stderr_fd) = match plan.stderr() {
        StderrMode::Socket => (None, None, sock_fd),
        StderrMode::Log => {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            // Only the read end is non-blocking (the event loop's side): the
            // write end is a separate file description and stays blocking.
            set_nonblocking(r.as_raw_fd())?;
            let w = above_stdio(w)?;
            let fd = w.as_raw_fd();
            (Some(r), Some(w), fd)
        }
        StderrMode::Null => (None, None, dev_null()?),
    };

    let mut report = Report::default();
    let child = Child {
        plan,
        path: path.as_ptr(),
        envp: env.as_ptr(),
        sock: sock_fd,
        stderr: stderr_fd,
        report: &mut report,
        fd_limit: close_fallback_limit(),
        signals: non_default_signals(),
        empty_mask: empty_sigset(),
    };
    let stack_top = child_stack()?;

    // The child runs `child_main` on its own stack (`child_stack`, used by
    // one child at a time: CLONE_VFORK suspends this thread until the child
    // has exec'd or exited). Signals superd handles are blocked (signalfd),
    // so no handler of superd's can run on the shared memory.
    // SAFETY: the child makes only async-signal-safe calls on `child`,
    // which lives in this frame until clone returns, and never returns.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack_top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&child as *const Child<'_>).cast_mut().cast(),
        )
    };
    if pid == -1 {
        return Err(Errno::last());
    }

    // The child has exec'd or exited: close our copies of its ends, so EOF
    // on the stderr pipe means "the child and its descendants are done".
    drop(stderr_w);
    drop(sock_moved);
    // SAFETY: the child wrote `report` (if at all) before it exited, and
    // CLONE_VFORK orders that write before clone's return here.
    let report = unsafe { ptr::read_volatile(&report) };
    let exec_failure = report.failed.then(|| ExecFailure {
        step: Step::from_code(report.step).unwrap_or(Step::Exec),
        errno: Errno::from_raw(report.errno),
    });
    Ok(Spawned {
        pid: Pid::from_raw(pid),
        stderr: stderr_r,
        exec_failure,
    })
}

/// A failed step and the errno it left.
struct Failure(Step, libc::c_int);

/// `Err` with the current errno when a syscall returned -1.
fn check(ret: libc::c_int, step: Step) -> Result<(), Failure> {
    if ret == -1 {
        Err(Failure(step, Errno::last_raw()))
    } else {
        Ok(())
    }
}

/// What a failed child leaves in superd's memory before `_exit(127)`.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Report {
    failed: bool,
    step: u32,
    errno: libc::c_int,
}

/// The entry point of the cloned child.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Child` that `spawn` passed to clone; spawn's
    // frame, and so the Child, outlives the child's use of it (CLONE_VFORK).
    let child = unsafe { &*(arg as *const Child<'_>) };
    child.run()
}

/// Size of the child's stack: the child sequence is a few small frames of
/// syscalls; glibc's posix_spawn uses far less.
const CHILD_STACK: usize = 256 * 1024;

thread_local! {
    /// The top of this thread's child stack, mapped once (0: not yet).
    static STACK_TOP: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The top of a stack for the child, mapped once per thread (the daemon has
/// one thread; concurrent test threads each get their own), with a guard
/// page below it.
fn child_stack() -> Result<*mut libc::c_void, Errno> {
    let top = STACK_TOP.with(|t| t.get());
    if top != 0 {
        return Ok(top as *mut libc::c_void);
    }
    // SAFETY: an anonymous private mapping; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            CHILD_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: the lowest page of our own mapping becomes a guard page: a
    // runaway child faults instead of writing over other memory.
    unsafe { libc::mprotect(base, 4096, libc::PROT_NONE) };
    // Stacks grow down; the top is 16-byte aligned (page aligned, in fact).
    let top = base as usize + CHILD_STACK;
    STACK_TOP.with(|t| t.set(top));
    Ok(top as *mut libc::c_void)
}

/// The signals whose disposition is not the default in superd: inherited
/// `SIG_IGN`s (signal 32 under some supervisors), SIGPIPE (the Rust runtime
/// ignores it) and any handler. superd never changes dispositions after it
/// starts, so this is read once; the child resets only these (an ignored
/// signal survives exec; a handler must not run on shared memory).
fn non_default_signals() -> &'static [libc::c_int] {
    static LIST: OnceLock<Vec<libc::c_int>> = OnceLock::new();
    LIST.get_or_init(|| {
        (1..=libc::SIGRTMAX())
            .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
            .filter(|&sig| {
                let mut old = [0u64; 8];
                // SAFETY: rt_sigaction(2) reading the current action into a
                // buffer larger than the kernel's struct sigaction; 8 is the
                // kernel sigset size.
                let ret = unsafe {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        ptr::null::<libc::c_void>(),
                        old.as_mut_ptr(),
                        8usize,
                    )
                };
                // The handler is the first word: 0 is SIG_DFL.
                ret == 0 && old[0] != 0
            })
            .collect()
    })
}

/// Everything the child needs, as raw values; built before the clone.
struct Child<'a> {
    plan: &'a SpawnPlan,
    path: *const libc::c_char,
    envp: *const *const libc::c_char,
    /// The socket for fds 0 and 1, >= 3.
    sock: RawFd,
    /// What goes on fd 2 (the socket, a pipe or /dev/null), >= 3.
    stderr: RawFd,
    /// Where a failure is reported, in superd's memory (shared until exec).
    report: *mut Report,
    /// `Some(n)`: the kernel lacks `CLOSE_RANGE_CLOEXEC`; mark 3..n by hand.
    fd_limit: Option<RawFd>,
    /// The signals to reset to their default disposition.
    signals: &'static [libc::c_int],
    empty_mask: libc::sigset_t,
}

impl Child<'_> {
    /// The child side: set up, exec, or report and `_exit(127)`.
    fn run(&self) -> ! {
        let Err(Failure(step, errno)) = self.setup_and_exec();
        // SAFETY: `report` points into spawn's frame, alive and not touched
        // by superd until this child is gone (CLONE_VFORK).
        unsafe {
            ptr::write_volatile(
                self.report,
                Report {
                    failed: true,
                    step: step.code(),
                    errno,
                },
            )
        };
        // SAFETY: _exit(2) ends the child without running atexit handlers or
        // flushing stdio buffers, which are superd's own (shared memory).
        unsafe { libc::_exit(127) }
    }

    /// Returns only on failure.
    fn setup_and_exec(&self) -> Result<std::convert::Infallible, Failure> {
        // 1. Signals. Dispositions first, so that once the mask is emptied no
        // inherited handler can run in the child; then the empty mask (the
        // daemon blocks its signalfd signals; Rust ignores SIGPIPE).
        for &sig in self.signals {
            // An all-zero kernel `struct sigaction` is SIG_DFL with no flags
            // and an empty mask. The raw syscall also reaches glibc's
            // reserved signals (32, 33), which sigaction(3) refuses, yet an
            // ignored one is inherited across exec (we met signal 32 ignored
            // under `cargo test`).
            let kernel_default = [0u64; 8];
            // SAFETY: rt_sigaction(2) reads the zeroed buffer (larger than
            // the kernel struct on every Linux ABI) and writes nothing; 8 is
            // sizeof(kernel sigset_t).
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    kernel_default.as_ptr(),
                    ptr::null_mut::<libc::c_void>(),
                    8usize,
                )
            };
            if ret == -1 && Errno::last_raw() != libc::EINVAL {
                return Err(Failure(Step::Signals, Errno::last_raw()));
            }
        }
        let set = &self.empty_mask;
        // SAFETY: sigprocmask(2) with an initialised empty set.
        let ret = unsafe { libc::sigprocmask(libc::SIG_SETMASK, set, ptr::null_mut()) };
        check(ret, Step::Signals)?;

        // 2. Own session and process group, so `timeout` and shutdown can
        // signal the whole tree with kill(-pid).
        // SAFETY: setsid(2) takes no arguments.
        check(unsafe { libc::setsid() }, Step::Setsid)?;

        // 3. The socket on 0 and 1, the stderr target on 2. Sources are >= 3
        // (see `spawn`), so dup2 makes fresh descriptors; CLOEXEC is cleared
        // explicitly anyway, since dup2(fd, fd) would keep it.
        for (src, dst) in [(self.sock, 0), (self.sock, 1), (self.stderr, 2)] {
            // SAFETY: dup2(2) and fcntl(2) on fds valid in this process.
            unsafe {
                check(libc::dup2(src, dst), Step::Dup2)?;
                check(libc::fcntl(dst, libc::F_SETFD, 0), Step::Dup2)?;
            }
        }
        // The daemon's socket is non-blocking; legacy programs expect a
        // blocking one. O_NONBLOCK lives in the file description shared with
        // the daemon's copy, which the daemon closes (nowait) or resets when
        // this child exits (wait).
        // SAFETY: fcntl(2) F_GETFL/F_SETFL on fd 0, just made valid.
        unsafe {
            let flags = libc::fcntl(0, libc::F_GETFL);
            check(flags, Step::Dup2)?;
            if flags & libc::O_NONBLOCK != 0 {
                check(
                    libc::fcntl(0, libc::F_SETFL, flags & !libc::O_NONBLOCK),
                    Step::Dup2,
                )?;
            }
        }

        // 4. No other fd survives exec: one close_range pass marks them all
        // close-on-exec (the child has its own fd table: no CLONE_FILES).
        self.cloexec_above_stdio()?;

        // 5. Limits, priority and umask, while still privileged (raising a
        // hard limit or lowering nice needs root).
        for (resource, limit) in self.plan.rlimits() {
            // SAFETY: setrlimit(2) with a valid rlimit struct.
            check(unsafe { libc::setrlimit(*resource, limit) }, Step::Rlimit)?;
        }
        if let Some(nice) = self.plan.nice() {
            // SAFETY: setpriority(2) on this process; sets, does not add.
            let ret = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
            check(ret, Step::Nice)?;
        }
        // SAFETY: umask(2) cannot fail.
        unsafe { libc::umask(self.plan.umask()) };

        // 6. chroot, then cwd inside it (SPEC §2: paths are inside the chroot).
        if let Some(root) = self.plan.chroot() {
            // SAFETY: chroot(2) with a NUL-terminated path owned by the plan.
            check(unsafe { libc::chroot(root.as_ptr()) }, Step::Chroot)?;
        }
        // SAFETY: chdir(2) with a NUL-terminated path owned by the plan.
        let ret = unsafe { libc::chdir(self.plan.cwd().as_ptr()) };
        check(ret, Step::Chdir)?;

        // 7. Identity: groups, then gid, then uid (after setuid we could no
        // longer change the others), then check it cannot be undone.
        if let Some(c) = self.plan.credentials() {
            if c.set_groups {
                // SAFETY: setgroups(2) with a pointer/length pair from a Vec.
                let ret = unsafe {
                    libc::syscall(libc::SYS_setgroups, c.groups.len(), c.groups.as_ptr())
                };
                check(ret as libc::c_int, Step::Setgroups)?;
            }
            // SAFETY: setgid(2)/setuid(2) take plain ids; raw, see the top.
            let ret = unsafe { libc::syscall(libc::SYS_setgid, c.gid) };
            check(ret as libc::c_int, Step::Setgid)?;
            // SAFETY: as above.
            let ret = unsafe { libc::syscall(libc::SYS_setuid, c.uid) };
            check(ret as libc::c_int, Step::Setuid)?;
            self.verify(c.uid, c.gid)?;
        }

        // 8. exec. On success superd resumes (CLONE_VFORK) with no report.
        // SAFETY: execve(2) with NUL-terminated strings and NULL-terminated
        // arrays owned by the plan and by the caller's `Env`, alive until
        // `spawn` returns.
        unsafe { libc::execve(self.path, self.plan.argv_ptr(), self.envp) };
        Err(Failure(Step::Exec, Errno::last_raw()))
    }

    /// Marks every fd >= 3 close-on-exec.
    fn cloexec_above_stdio(&self) -> Result<(), Failure> {
        match self.fd_limit {
            None => {
                // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets
                // flags; no fd is closed under us.
                let ret = unsafe {
                    libc::syscall(
                        libc::SYS_close_range,
                        3u32,
                        u32::MAX,
                        libc::CLOSE_RANGE_CLOEXEC,
                    )
                };
                if ret == -1 {
                    return Err(Failure(Step::Fds, Errno::last_raw()));
                }
            }
            Some(limit) => {
                for fd in 3..limit {
                    // SAFETY: fcntl(2) on any fd number; EBADF for unused ones.
                    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                    if ret == -1 && Errno::last_raw() != libc::EBADF {
                        return Err(Failure(Step::Fds, Errno::last_raw()));
                    }
                }
            }
        }
        Ok(())
    }

    /// After setuid: every real/effective/saved id is the target, and a
    /// non-root child cannot get root back.
    fn verify(&self, uid: libc::uid_t, gid: libc::gid_t) -> Result<(), Failure> {
        let fail = Err(Failure(Step::Verify, libc::EPERM));
        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: getresuid(2) writes three ids to valid stack locations.
        let ret = unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
        check(ret, Step::Verify)?;
        if (r, e, s) != (uid, uid, uid) {
            return fail;
        }
        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: getresgid(2) writes three ids to valid stack locations.
        let ret = unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
        check(ret, Step::Verify)?;
        if (r, e, s) != (gid, gid, gid) {
            return fail;
        }
        // SAFETY: setuid(2), raw; it must fail here.
        if uid != 0 && unsafe { libc::syscall(libc::SYS_setuid, 0) } != -1 {
            return fail;
        }
        Ok(())
    }
}

fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset(3) initialises the set it is given; zeroed memory
    // is a valid starting value for the plain-data `sigset_t`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

/// Moves `fd` to >= 3 when it sits on 0-2.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    if fd.as_raw_fd() >= 3 {
        Ok(fd)
    } else {
        dup_above_stdio(fd.as_raw_fd())
    }
}

/// A close-on-exec duplicate of `fd` numbered >= 3.
fn dup_above_stdio(fd: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: fcntl(2) F_DUPFD_CLOEXEC on a valid fd.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new == -1 {
        return Err(Errno::last());
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn set_nonblocking(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: fcntl(2) F_GETFL/F_SETFL on a valid fd.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags == -1 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == -1 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// One process-wide /dev/null (close-on-exec, >= 3) for `stderr: null`,
/// opened on first use rather than per spawn.
fn dev_null() -> Result<RawFd, Errno> {
    static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = DEV_NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let fd = above_stdio(OwnedFd::from(file))?;
    // A racing thread may have set it first; either fd is fine.
    let _ = DEV_NULL.set(fd);
    DEV_NULL.get().map(|fd| fd.as_raw_fd()).ok_or(Errno::EIO)
}

/// `None` when `close_range(CLOSE_RANGE_CLOEXEC)` works (Linux >= 5.11,
/// probed once); otherwise the bound for the fcntl loop: superd's own soft
/// `nofile` limit, above which it can hold no fd.
fn close_fallback_limit() -> Option<RawFd> {
    const UNKNOWN: u8 = 0;
    const SUPPORTED: u8 = 1;
    const MISSING: u8 = 2;
    static CLOSE_RANGE: AtomicU8 = AtomicU8::new(UNKNOWN);
    let mut state = CLOSE_RANGE.load(Ordering::Relaxed);
    if state == UNKNOWN {
        // SAFETY: close_range(2) over the empty range [~0U, ~0U] (no such
        // fd): only tells whether the kernel knows the syscall and flag.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                u32::MAX,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        state = if ret == 0 { SUPPORTED } else { MISSING };
        CLOSE_RANGE.store(state, Ordering::Relaxed);
    }
    if state == SUPPORTED {
        return None;
    }
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    Some(RawFd::try_from(soft).unwrap_or(RawFd::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_codes_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::from_code(step.code()), Some(step));
        }
        assert_eq!(Step::from_code(99), None);
        assert_eq!(Step::Exec.as_str(), "exec");
        assert_eq!(Step::Setgroups.to_string(), "setgroups");
    }

    #[test]
    fn failure_formats_as_log_fields() {
        let f = ExecFailure {
            step: Step::Exec,
            errno: Errno::ENOENT,
        };
        assert_eq!(
            f.to_string(),
            r#"step=exec error="No such file or directory""#
        );
    }
}
