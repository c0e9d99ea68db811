//! Starting a child, the child sequence, exec: the only code of superd that
//! runs between clone and `execve`. Everything it uses was built before by
//! [`crate::plan`]; a failure is reported in superd's own memory.

#![allow(unsafe_code)]

// The rule for this module: after the clone the child makes only raw
// system calls (the `sys` functions below, which never touch errno) on data
// prepared before it. It never allocates, never logs (fd 2 belongs to the
// client), never panics and never returns: it ends in `execve` or `_exit`.
//
// The child is started with `clone3(CLONE_VM)` (or `clone` where the
// kernel or a seccomp filter lacks clone3) on a stack of its own: it
// shares superd's memory until execve, so no page table is copied and no
// page faults in copy-on-write (fork's cost grows with the parent's
// mappings). Unlike posix_spawn's CLONE_VFORK, superd is not suspended
// until the child has exec'd: under load a new child waits for a CPU behind
// the running ones, and superd goes on accepting meanwhile. So the child
// runs beside superd in the same memory: it must not write anything superd
// uses (errno included, which is why every call is a raw syscall), and what
// it reads (the plan, its environment, its stack) is kept alive by the
// [`Pending`] superd holds until the child is past exec. A close-on-exec
// pipe tells superd when that is: EOF after exec, or the failure report
// the child writes before it exits 127.

use std::cell::RefCell;
use std::fmt;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::Pid;

use crate::plan::{ConnInfo, Env, SpawnPlan};
use crate::service::StderrMode;

pub mod sandbox;

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
    SetnsNet,
    SetnsMnt,
    Chroot,
    Chdir,
    Setgroups,
    Setgid,
    Setuid,
    Verify,
    Capabilities,
    NoNewPrivs,
    Exec,
}
// `Umask` never fails (umask(2) cannot) but keeps its place in the
// vocabulary; `Verify` reports EPERM: the ids did not stick, or a non-root
// child could become root again.

impl Step {
    /// In sequence order; the index is the code in the failure report.
    const ALL: [Step; 18] = [
        Step::Signals,
        Step::Setsid,
        Step::Dup2,
        Step::Fds,
        Step::Rlimit,
        Step::Nice,
        Step::Umask,
        Step::SetnsNet,
        Step::SetnsMnt,
        Step::Chroot,
        Step::Chdir,
        Step::Setgroups,
        Step::Setgid,
        Step::Setuid,
        Step::Verify,
        Step::Capabilities,
        Step::NoNewPrivs,
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
            Step::SetnsNet => "setns_net",
            Step::SetnsMnt => "setns_mnt",
            Step::Chroot => "chroot",
            Step::Chdir => "chdir",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setgid",
            Step::Setuid => "setuid",
            Step::Verify => "verify",
            Step::Capabilities => "capabilities",
            Step::NoNewPrivs => "no_new_privs",
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
    /// How the child's way to exec ends; superd holds it until then.
    pub exec: Pending,
    /// A pidfd for the child (`CLONE_PIDFD`) where [`pidfd_works`] holds
    /// (and a descriptor was free): readable once it has exited, then
    /// reaped by `waitid(P_PIDFD)` (see crate::children).
    pub pidfd: Option<OwnedFd>,
}

/// A child on its way to exec: what it reads (the plan, its environment,
/// its stack) stays alive here until the child is past exec or has exited,
/// which the report pipe says (see [`Pending::poll`]).
pub struct Pending {
    /// Read end of the close-on-exec report pipe, non-blocking.
    pipe: OwnedFd,
    /// Failure report bytes read so far.
    got: [u8; REPORT_LEN],
    len: usize,
    done: bool,
    /// What the child reads until it is past exec; `None` once it is.
    lent: Option<Lent>,
}

/// The memory a child before exec uses, all in one place so that it is
/// either freed together (the child is past exec) or leaked together.
struct Lent {
    _child: Box<Child>,
    _env: Env<'static>,
    _plan: Rc<SpawnPlan>,
    stack: Stack,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").field("done", &self.done).finish()
    }
}

impl Pending {
    /// The report pipe, for the event loop to watch (readable when the
    /// outcome is known).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// `None` while the child has not reached exec; then `Some(None)` when
    /// it exec'd, `Some(Some(failure))` when it failed and exits 127.
    /// Never blocks.
    pub fn poll(&mut self) -> Option<Option<ExecFailure>> {
        if self.done {
            return Some(self.failure());
        }
        loop {
            let mut buf = [0u8; REPORT_LEN];
            match nix::unistd::read(self.pipe.as_raw_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let take = n.min(REPORT_LEN - self.len);
                    self.got[self.len..self.len + take].copy_from_slice(&buf[..take]);
                    self.len += take;
                }
                Err(Errno::EINTR) => continue,
                // Not yet; nor, to be safe, on an error a pipe we own
                // cannot give: nothing is released while unsure.
                Err(_) => return None,
            }
        }
        // EOF: the child's copy of the write end is closed, by exec
        // (close-on-exec) or by its exit; either way it no longer uses our
        // memory.
        self.done = true;
        if let Some(lent) = self.lent.take() {
            lent.stack.release();
        }
        Some(self.failure())
    }

    /// Waits for the outcome (tests; the loop uses [`poll`](Self::poll)).
    pub fn wait(&mut self) -> Option<ExecFailure> {
        loop {
            if let Some(outcome) = self.poll() {
                return outcome;
            }
            let mut pfd = [nix::poll::PollFd::new(
                self.pipe.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::NONE);
        }
    }

    fn failure(&self) -> Option<ExecFailure> {
        if self.len < REPORT_LEN {
            return None;
        }
        let step = u32::from_ne_bytes(self.got[0..4].try_into().unwrap_or_default());
        let errno = i32::from_ne_bytes(self.got[4..8].try_into().unwrap_or_default());
        Some(ExecFailure {
            step: Step::from_code(step).unwrap_or(Step::Exec),
            errno: Errno::from_raw(errno),
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done && self.poll().is_none() {
            // Still before exec (superd is exiting, or the caller gave up):
            // the child may still read what this holds, so it is leaked,
            // never freed under it.
            std::mem::forget(self.lent.take());
        }
    }
}

/// Starts the plan's program on `sock` (blocking in the child) with the
/// environment for `conn`, without waiting for it: the outcome comes later
/// through [`Spawned::exec`]. `Err` only when no child was started
/// (`EAGAIN`, `ENOMEM`, or `EINVAL` for a builtin's plan). Does not reap.
///
/// `cgroup`, a cgroup v2 directory, is where the child starts (`clone3`
/// with `CLONE_INTO_CGROUP`: no migration after the start, nothing for the
/// child to do); it is only given where [`clone3_works`] holds.
pub fn spawn(
    plan: &Rc<SpawnPlan>,
    sock: BorrowedFd<'_>,
    conn: &ConnInfo,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Spawned, Errno> {
    if plan.listen_fds().is_some() {
        return spawn_listen_fds(plan, &[sock], conn, cgroup);
    }
    spawn_with(plan, sock, conn, Vec::new(), cgroup)
}

/// `pass: listen_fds` (superd.yaml(5), SOCKET ACTIVATION): starts the
/// plan's program with `socks` on fds 3 and up, in order (blocking, not
/// close-on-exec), /dev/null on fd 0, the log pipe or /dev/null on fds 1
/// and 2, and `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`. As [`spawn`]
/// otherwise.
pub fn spawn_listen_fds(
    plan: &Rc<SpawnPlan>,
    socks: &[BorrowedFd<'_>],
    conn: &ConnInfo,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Spawned, Errno> {
    let null = dev_null()?;
    // SAFETY: the /dev/null descriptor is kept open for the life of superd
    // (a static); it is borrowed only for this call.
    let null = unsafe { BorrowedFd::borrow_raw(null) };
    spawn_with(
        plan,
        null,
        conn,
        socks.iter().map(|s| s.as_raw_fd()).collect(),
        cgroup,
    )
}

/// The one way a child is started: `sock` on fds 0 and 1 (and 2 per the
/// plan's `stderr`), or, with `listen` not empty, /dev/null on fd 0, the
/// stderr target on fds 1 and 2, and `listen` on fds 3 and up.
fn spawn_with(
    plan: &Rc<SpawnPlan>,
    sock: BorrowedFd<'_>,
    conn: &ConnInfo,
    listen: Vec<RawFd>,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Spawned, Errno> {
    let path = plan.path().ok_or(Errno::EINVAL)?.as_ptr();
    // SAFETY: the environment points into `plan` (kept alive, unmoved, by
    // the Rc held next to it in `Pending`) and into its own buffers; the
    // lifetime is erased only so that both can live in one struct.
    let env: Env<'static> = unsafe { std::mem::transmute(plan.envp_for(conn)) };

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
    // Both ends non-blocking in one call: the loop's read end must be, and
    // the child writes its 8-byte report into an empty pipe, which never
    // blocks (no fcntl pair per connection).
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // The child's dup3 onto 0-2 must not land on it, nor, with listen_fds,
    // its dup3 onto 3 … 3+n-1 (it reports a failure after those).
    let report_w = above(report_w, 3 + listen.len() as RawFd)?;
    // Where the child parks the sockets before it moves them down onto
    // 3 … 3+n-1: above every descriptor it still needs (see
    // `Child::listen_fds`).
    let park = listen
        .iter()
        .chain([sock_fd, stderr_fd, report_w.as_raw_fd()].iter())
        .copied()
        .max()
        .unwrap_or(2)
        .max(2 + listen.len() as RawFd)
        + 1;

    let child = Box::new(Child {
        plan: Rc::as_ptr(plan),
        path,
        envp: env.as_ptr(),
        sock: sock_fd,
        stderr: stderr_fd,
        report: report_w.as_raw_fd(),
        fd_limit: close_fallback_limit(),
        signals: non_default_signals(),
        listen,
        park,
        pid_slot: env.pid_slot(),
    });
    let stack = Stack::take()?;
    let arg: *mut libc::c_void = (&*child as *const Child).cast_mut().cast();

    // The child runs `child_main` on `stack`, beside this thread. Signals
    // superd handles are blocked (signalfd), so no handler of superd's runs
    // in the child before it resets them.
    let mut pidfd: libc::c_int = -1;
    let pid = if clone3_works() {
        let mut flags = libc::CLONE_VM as u64;
        if cgroup.is_some() {
            flags |= CLONE_INTO_CGROUP;
        }
        // With a pidfd the child is reaped through it alone (see
        // crate::children); its SIGCHLD only wakes the rate-bounded sweep
        // left for orphans (exec would give it back the default exit
        // signal anyway).
        let mut with_pidfd = pidfd_works();
        loop {
            let args = CloneArgs {
                flags: if with_pidfd {
                    flags | CLONE_PIDFD
                } else {
                    flags
                },
                pidfd: if with_pidfd {
                    &mut pidfd as *mut libc::c_int as u64
                } else {
                    0
                },
                exit_signal: libc::SIGCHLD as u64,
                stack: stack.base as u64,
                stack_size: CHILD_STACK as u64,
                cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
                ..CloneArgs::default()
            };
            // SAFETY: as for clone below; `args` is read by the kernel
            // during the call only.
            let ret = unsafe { sys::clone3(&args, child_main, arg) };
            // Out of descriptors for the pidfd: this child goes without
            // one, reaped by the sweep (see crate::children).
            if with_pidfd && (ret == -(libc::EMFILE as isize) || ret == -(libc::ENFILE as isize)) {
                with_pidfd = false;
                continue;
            }
            if ret < 0 {
                stack.release();
                return Err(Errno::from_raw(-ret as i32));
            }
            break ret as libc::pid_t;
        }
    } else {
        // `Pending` keeps `child`, the plan, the environment and the stack
        // alive until the report pipe says the child is past exec.
        // SAFETY: the child makes only raw syscalls on `child`, kept alive
        // as said; it never returns.
        let pid =
            unsafe { libc::clone(child_main, stack.top(), libc::CLONE_VM | libc::SIGCHLD, arg) };
        if pid == -1 {
            let e = Errno::last();
            stack.release();
            return Err(e);
        }
        pid
    };

    // The child has its own copies (its fd table was copied at clone):
    // ours go now, so EOF on the report pipe means "past exec" and EOF on
    // the stderr pipe "the child and its descendants are done".
    drop(report_w);
    drop(stderr_w);
    drop(sock_moved);
    // SAFETY: with CLONE_PIDFD the kernel wrote a new close-on-exec pidfd
    // (owned by no one else) into the slot; otherwise it is still -1.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Ok(Spawned {
        pid: Pid::from_raw(pid),
        pidfd,
        stderr: stderr_r,
        exec: Pending {
            pipe: report_r,
            got: [0; REPORT_LEN],
            len: 0,
            done: false,
            lent: Some(Lent {
                _child: child,
                _env: env,
                _plan: plan.clone(),
                stack,
            }),
        },
    })
}

/// `CLONE_INTO_CGROUP` (Linux 5.7), the flag of `clone3` only.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `CLONE_PIDFD` (Linux 5.2): the kernel writes a pidfd for the child to
/// `clone_args.pidfd`.
const CLONE_PIDFD: u64 = 0x1000;

/// `P_PIDFD` for waitid(2) (Linux 5.4).
pub const P_PIDFD: libc::idtype_t = 3;

/// Whether children are started with a pidfd and reaped through it:
/// `clone3` works and waitid(2) knows `P_PIDFD` (Linux >= 5.4); probed
/// once. Otherwise children are reaped by `waitpid(-1)` on SIGCHLD.
pub fn pidfd_works() -> bool {
    static PIDFD: OnceLock<bool> = OnceLock::new();
    *PIDFD.get_or_init(|| {
        if !clone3_works() {
            return false;
        }
        // SAFETY: siginfo_t is plain data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // waitid(2) on a pidfd that is no open fd (the largest number; a
        // negative one is EINVAL) waits for nothing: a kernel that knows
        // P_PIDFD answers EBADF, an older one EINVAL.
        // SAFETY: that call waits for nothing; `info` is ours to write.
        let ret = unsafe {
            libc::waitid(
                P_PIDFD,
                i32::MAX as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        };
        ret == -1 && Errno::last() == Errno::EBADF
    })
}

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Whether `clone3(2)` can be used (Linux >= 5.3, and not refused with
/// `ENOSYS` by a seccomp filter, as some container runtimes do); probed
/// once. Otherwise children are started with `clone(2)`, and never in a
/// cgroup of their own.
pub fn clone3_works() -> bool {
    static CLONE3: OnceLock<bool> = OnceLock::new();
    *CLONE3.get_or_init(|| {
        // SAFETY: clone3 with no arguments (NULL, size 0) starts nothing:
        // a kernel that has it answers EINVAL (size below the first
        // version of the struct).
        let ret = unsafe { libc::syscall(libc::SYS_clone3, ptr::null::<CloneArgs>(), 0usize) };
        ret == -1 && Errno::last() == Errno::EINVAL
    })
}

/// A failed step and the errno it left.
struct Failure(Step, libc::c_int);

// prctl(2) options (linux/prctl.h).
const PR_SET_KEEPCAPS: libc::c_int = 8;
const PR_SET_NO_NEW_PRIVS: libc::c_int = 38;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_RAISE: libc::c_ulong = 2;

/// The failure report: step code and errno, native endian.
const REPORT_LEN: usize = 8;

/// The entry point of the cloned child.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the boxed `Child` that `spawn` passed to clone, kept
    // alive by its `Pending` until this child is past exec.
    let child = unsafe { &*(arg as *const Child) };
    child.run()
}

/// Size of a child's stack: the child sequence is a few small frames of
/// syscalls; glibc's posix_spawn uses far less. Only touched pages count.
const CHILD_STACK: usize = 64 * 1024;

/// Stacks kept for reuse at the most (each is mapped once).
const STACK_POOL: usize = 64;

thread_local! {
    /// Stacks of children that are past exec, for the next ones.
    static STACKS: RefCell<Vec<Stack>> = const { RefCell::new(Vec::new()) };
}

/// A child's stack: an anonymous mapping with a guard page at the bottom.
struct Stack {
    base: *mut libc::c_void,
    /// The whole mapping, guard page included (see [`stack_layout`]).
    len: usize,
}

/// The system's page size (64 KiB on some aarch64 kernels, not always
/// 4 KiB), asked once, in the parent: nothing in the child calls sysconf.
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf(3) reads a system value; no pointer involved.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

/// A stack's mapping length and guard length for pages of `page` bytes:
/// one whole page of guard below at least CHILD_STACK usable bytes, so a
/// larger page neither leaves part of the guard writable nor eats the
/// stack.
fn stack_layout(page: usize) -> (usize, usize) {
    (CHILD_STACK.next_multiple_of(page) + page, page)
}

impl Stack {
    /// A stack from the pool, or a new mapping.
    fn take() -> Result<Stack, Errno> {
        if let Some(s) = STACKS.with(|p| p.borrow_mut().pop()) {
            return Ok(s);
        }
        let (len, guard) = stack_layout(page_size());
        // SAFETY: an anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
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
        unsafe { libc::mprotect(base, guard, libc::PROT_NONE) };
        Ok(Stack { base, len })
    }

    /// Stacks grow down; the top is page aligned.
    fn top(&self) -> *mut libc::c_void {
        (self.base as usize + self.len) as *mut libc::c_void
    }

    /// Back to the pool (or unmapped) once no child runs on it.
    fn release(self) {
        STACKS.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < STACK_POOL {
                pool.push(self);
            } else {
                // SAFETY: our own mapping, used by no child any more.
                unsafe { libc::munmap(self.base, self.len) };
            }
        });
    }
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
struct Child {
    /// Kept alive by the `Rc` in `Pending`.
    plan: *const SpawnPlan,
    path: *const libc::c_char,
    envp: *const *const libc::c_char,
    /// The socket for fds 0 and 1, >= 3.
    sock: RawFd,
    /// What goes on fd 2 (the socket, a pipe or /dev/null), >= 3.
    stderr: RawFd,
    /// The write end of the report pipe (close-on-exec).
    report: RawFd,
    /// `Some(n)`: the kernel lacks `CLOSE_RANGE_CLOEXEC`; mark 3..n by hand.
    fd_limit: Option<RawFd>,
    /// The signals to reset to their default disposition.
    signals: &'static [libc::c_int],
    /// `pass: listen_fds`: the sockets for fds 3 … 3+n-1, in order; empty
    /// for stdio.
    listen: Vec<RawFd>,
    /// The first of n free numbers above every fd the child uses, where it
    /// parks the sockets on their way down to 3 … 3+n-1.
    park: RawFd,
    /// Room for the digits of the child's pid after `LISTEN_PID=` in its
    /// environment (see [`Env::pid_slot`]); null for stdio.
    pid_slot: *mut u8,
}

impl Child {
    /// The child side: set up, exec, or report and `_exit(127)`.
    fn run(&self) -> ! {
        let Err(Failure(step, errno)) = self.setup_and_exec();
        let mut report = [0u8; REPORT_LEN];
        report[0..4].copy_from_slice(&step.code().to_ne_bytes());
        report[4..8].copy_from_slice(&errno.to_ne_bytes());
        // One write of 8 bytes to a pipe is atomic; if it fails there is
        // no one to tell.
        let _ = sys::write(self.report, &report);
        sys::exit(127)
    }

    /// Returns only on failure.
    fn setup_and_exec(&self) -> Result<std::convert::Infallible, Failure> {
        // SAFETY: `plan` is kept alive by `Pending` (see `Child::plan`).
        let plan = unsafe { &*self.plan };
        let at = |step: Step| move |errno: libc::c_int| Failure(step, errno);

        // 1. Signals. Dispositions first, so that once the mask is emptied no
        // inherited handler can run in the child; then the empty mask (the
        // daemon blocks its signalfd signals; Rust ignores SIGPIPE).
        for &sig in self.signals {
            // An all-zero kernel `struct sigaction` is SIG_DFL with no flags
            // and an empty mask. The raw syscall also reaches glibc's
            // reserved signals (32, 33), which sigaction(3) refuses, yet an
            // ignored one is inherited across exec (we met signal 32 ignored
            // under `cargo test`).
            match sys::sigaction_default(sig) {
                Ok(()) | Err(libc::EINVAL) => {}
                Err(e) => return Err(Failure(Step::Signals, e)),
            }
        }
        sys::unblock_all().map_err(at(Step::Signals))?;

        // 2. Own session and process group, so `timeout` and shutdown can
        // signal the group with kill(-pid); what leaves it (setsid) is
        // followed by its cgroup or superd as subreaper (crate::tree).
        sys::setsid().map_err(at(Step::Setsid))?;

        // 3. The socket on 0 and 1, the stderr target on 2. Sources are >= 3
        // (see `spawn`), so dup3 makes fresh descriptors without CLOEXEC.
        // With listen_fds, /dev/null on 0 and the stderr target on 1 and 2.
        let out = if self.listen.is_empty() {
            self.sock
        } else {
            self.stderr
        };
        for (src, dst) in [(self.sock, 0), (out, 1), (self.stderr, 2)] {
            sys::dup3(src, dst).map_err(at(Step::Dup2))?;
        }
        // The daemon's socket is non-blocking; legacy programs expect a
        // blocking one. O_NONBLOCK lives in the file description shared with
        // the daemon's copy, which the daemon closes (nowait) or resets when
        // this child exits (wait).
        let flags = sys::fcntl(0, libc::F_GETFL, 0).map_err(at(Step::Dup2))?;
        if flags & libc::O_NONBLOCK != 0 {
            sys::fcntl(0, libc::F_SETFL, flags & !libc::O_NONBLOCK).map_err(at(Step::Dup2))?;
        }

        // 3b. listen_fds: the sockets on 3 … 3+n-1 and LISTEN_PID.
        self.listen_fds()?;

        // 4. No other fd survives exec: one close_range pass marks them all
        // close-on-exec (the child has its own fd table: no CLONE_FILES).
        self.cloexec_above_stdio()?;

        // 5. Limits, priority and umask, while still privileged (raising a
        // hard limit or lowering nice needs root).
        for (resource, limit) in plan.rlimits() {
            sys::setrlimit(*resource as libc::c_int, limit).map_err(at(Step::Rlimit))?;
        }
        if let Some(nice) = plan.nice() {
            sys::setpriority(nice).map_err(at(Step::Nice))?;
        }
        sys::umask(plan.umask());

        // 5b. The service's namespaces (superd.yaml(5), "Fences"), made
        // when the configuration loaded: joined while still root (setns
        // needs CAP_SYS_ADMIN), before chroot and cwd, which are then
        // resolved inside them. Joining the mount namespace moves root and
        // cwd to its root.
        let fences = plan.fences();
        if let Some(ns) = &fences.namespaces {
            if let Some(fd) = ns.net_fd() {
                sys::setns(fd, libc::CLONE_NEWNET).map_err(at(Step::SetnsNet))?;
            }
            if let Some(fd) = ns.mnt_fd() {
                sys::setns(fd, libc::CLONE_NEWNS).map_err(at(Step::SetnsMnt))?;
            }
        }

        // 6. chroot, then cwd inside it (SPEC §2: paths are inside the chroot).
        if let Some(root) = plan.chroot() {
            sys::chroot(root.as_ptr()).map_err(at(Step::Chroot))?;
        }
        sys::chdir(plan.cwd().as_ptr()).map_err(at(Step::Chdir))?;

        // 7. Identity: groups, then gid, then uid (after setuid we could no
        // longer change the others), then check it cannot be undone.
        if let Some(c) = plan.credentials() {
            if c.set_groups {
                sys::setgroups(&c.groups).map_err(at(Step::Setgroups))?;
            }
            sys::setgid(c.gid).map_err(at(Step::Setgid))?;
            // `capabilities`: the permitted set survives setuid only with
            // PR_SET_KEEPCAPS (capabilities(7)).
            if fences.capset.is_some() {
                sys::prctl(PR_SET_KEEPCAPS, 1).map_err(at(Step::Capabilities))?;
            }
            sys::setuid(c.uid).map_err(at(Step::Setuid))?;
            self.verify(c.uid, c.gid)?;
        }

        // 7b. Fences on the new identity. The listed capabilities become
        // the permitted and inheritable sets (all others are dropped; the
        // effective set stays empty), then ambient, so that exec gives
        // them to the program. no_new_privs last: from exec on, no setuid
        // bit or file capability adds anything.
        if let Some(data) = &fences.capset {
            sys::capset(data).map_err(at(Step::Capabilities))?;
            for &cap in &fences.ambient {
                sys::prctl3(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
                    .map_err(at(Step::Capabilities))?;
            }
        }
        if fences.no_new_privs {
            sys::prctl(PR_SET_NO_NEW_PRIVS, 1).map_err(at(Step::NoNewPrivs))?;
        }

        // 8. exec. On success the report pipe closes (close-on-exec) and
        // superd hears EOF.
        let e = sys::execve(self.path, plan.argv_ptr(), self.envp);
        Err(Failure(Step::Exec, e))
    }

    /// `pass: listen_fds` (superd.yaml(5), SOCKET ACTIVATION): socket i on
    /// fd 3+i, blocking, not close-on-exec; then the child's pid, in
    /// decimal, into the room after `LISTEN_PID=`. The sockets go up to
    /// `park` first (above every source and the report pipe), then down:
    /// no dup3 lands on a descriptor still to be used. No allocation: the
    /// list and the room were made before the clone.
    fn listen_fds(&self) -> Result<(), Failure> {
        if self.listen.is_empty() {
            return Ok(());
        }
        let at = |errno| Failure(Step::Fds, errno);
        for (i, &src) in self.listen.iter().enumerate() {
            sys::dup3(src, self.park + i as RawFd).map_err(at)?;
        }
        for i in 0..self.listen.len() as RawFd {
            let fd = 3 + i;
            sys::dup3(self.park + i, fd).map_err(at)?;
            let flags = sys::fcntl(fd, libc::F_GETFL, 0).map_err(at)?;
            if flags & libc::O_NONBLOCK != 0 {
                sys::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK).map_err(at)?;
            }
        }
        if !self.pid_slot.is_null() {
            let mut pid = sys::getpid();
            let mut digits = [0u8; 10];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 || n == digits.len() {
                    break;
                }
            }
            for k in 0..n {
                // pid_slot points at PID_ROOM (20) NUL bytes of this
                // child's own environment buffer, kept alive by `Pending`,
                // that nothing else reads until execve.
                // SAFETY: at most 10 digits are written there; the rest stays NUL.
                unsafe { *self.pid_slot.add(k) = digits[n - 1 - k] };
            }
        }
        Ok(())
    }

    /// Marks every fd above stdio, and above the listen_fds sockets,
    /// close-on-exec.
    fn cloexec_above_stdio(&self) -> Result<(), Failure> {
        let first = 3 + self.listen.len() as RawFd;
        match self.fd_limit {
            None => sys::cloexec_range(first as u32).map_err(|e| Failure(Step::Fds, e)),
            Some(limit) => {
                for fd in first..limit {
                    match sys::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) {
                        Ok(_) | Err(libc::EBADF) => {}
                        Err(e) => return Err(Failure(Step::Fds, e)),
                    }
                }
                Ok(())
            }
        }
    }

    /// After setuid: every real/effective/saved id is the target, and a
    /// non-root child cannot get root back.
    fn verify(&self, uid: libc::uid_t, gid: libc::gid_t) -> Result<(), Failure> {
        let fail = Err(Failure(Step::Verify, libc::EPERM));
        let ids = sys::getresuid().map_err(|e| Failure(Step::Verify, e))?;
        if ids != [uid, uid, uid] {
            return fail;
        }
        let ids = sys::getresgid().map_err(|e| Failure(Step::Verify, e))?;
        if ids != [gid, gid, gid] {
            return fail;
        }
        // It must fail here.
        if uid != 0 && sys::setuid(0).is_ok() {
            return fail;
        }
        Ok(())
    }
}

/// The child's system calls: raw, so that no errno (superd's, in the
/// memory the child shares) is ever written; each returns the errno
/// itself.
mod sys {
    use std::ffi::c_char;

    /// One system call; a result in -4095..=-1 is an errno.
    ///
    /// # Safety
    /// The arguments must be valid for syscall `n`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn raw(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the Linux x86_64 syscall ABI: number in rax, arguments in
        // rdi, rsi, rdx, r10, r8, r9; rcx and r11 are clobbered.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                in("r10") a[3],
                in("r8") a[4],
                in("r9") a[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// See the x86_64 version.
    ///
    /// # Safety
    /// The arguments must be valid for syscall `n`.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn raw(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the Linux aarch64 syscall ABI: number in x8, arguments in
        // x0-x5, result in x0.
        unsafe {
            std::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a[0] as isize => ret,
                in("x1") a[1],
                in("x2") a[2],
                in("x3") a[3],
                in("x4") a[4],
                in("x5") a[5],
                options(nostack),
            );
        }
        ret
    }

    /// `clone3(2)` of a child that shares our memory and runs on its own
    /// stack (`args.stack`): the child calls `f(arg)`, which must not
    /// return (it exits if it does). Returns the pid, or `-errno`.
    ///
    /// # Safety
    /// `args` must describe a stack that no one else uses until the child
    /// is past exec, and `f` must be safe to run on it with `arg`.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn clone3(
        args: &super::CloneArgs,
        f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
        arg: *mut libc::c_void,
    ) -> isize {
        let ret: isize;
        // The x86_64 syscall ABI as in `raw`. In the child (rax 0) the
        // kernel has set rsp to the top of the new stack: it clears the
        // frame pointer, calls f(arg) there (rsp is 16-aligned before the
        // call, as the ABI wants) and never comes back to this frame.
        // SAFETY: as said; the parent goes on at `2:` with every register
        // but rax, rcx and r11 as they were.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "mov rdi, r13",
                "call r12",
                "mov edi, eax",
                "mov eax, {exit}",
                "syscall",
                "ud2",
                "2:",
                exit = const libc::SYS_exit_group,
                inlateout("rax") libc::SYS_clone3 as isize => ret,
                in("rdi") args as *const super::CloneArgs as usize,
                in("rsi") std::mem::size_of::<super::CloneArgs>(),
                in("r12") f as usize,
                in("r13") arg as usize,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// See the x86_64 version.
    ///
    /// # Safety
    /// As for the x86_64 version.
    #[cfg(target_arch = "aarch64")]
    pub unsafe fn clone3(
        args: &super::CloneArgs,
        f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
        arg: *mut libc::c_void,
    ) -> isize {
        let ret: isize;
        // The aarch64 syscall ABI as in `raw`. In the child (x0 0) the
        // kernel has set sp to the top of the new stack (16-aligned): it
        // clears the frame pointer, calls f(arg) and never comes back to
        // this frame.
        // SAFETY: as said; the parent goes on at `2:` with every register
        // but x0 as it was.
        unsafe {
            std::arch::asm!(
                "svc 0",
                "cbnz x0, 2f",
                "mov x29, xzr",
                "mov x0, x10",
                "blr x9",
                "mov x8, {exit}",
                "svc 0",
                "brk 0",
                "2:",
                exit = const libc::SYS_exit_group,
                in("x8") libc::SYS_clone3,
                inlateout("x0") args as *const super::CloneArgs as usize as isize => ret,
                in("x1") std::mem::size_of::<super::CloneArgs>(),
                in("x9") f as usize,
                in("x10") arg as usize,
                options(nostack),
            );
        }
        ret
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    compile_error!(concat!(
        "superd starts children with raw syscalls: ",
        "x86_64 and aarch64 only"
    ));

    fn call(n: libc::c_long, a: [usize; 6]) -> Result<usize, libc::c_int> {
        // SAFETY: every caller below passes arguments valid for `n`:
        // plain integers, or pointers to live, initialised memory of the
        // size the call reads or writes.
        let r = unsafe { raw(n, a) };
        if (-4095..0).contains(&r) {
            Err(-r as libc::c_int)
        } else {
            Ok(r as usize)
        }
    }

    pub fn sigaction_default(sig: libc::c_int) -> Result<(), libc::c_int> {
        // An all-zero kernel `struct sigaction` (larger than it on every
        // ABI): SIG_DFL, no flags, empty mask; 8 is the kernel sigset size.
        let act = [0u64; 8];
        call(
            libc::SYS_rt_sigaction,
            [sig as usize, act.as_ptr() as usize, 0, 8, 0, 0],
        )
        .map(drop)
    }

    pub fn unblock_all() -> Result<(), libc::c_int> {
        let empty = 0u64;
        call(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_SETMASK as usize,
                &empty as *const u64 as usize,
                0,
                8,
                0,
                0,
            ],
        )
        .map(drop)
    }

    pub fn getpid() -> u32 {
        call(libc::SYS_getpid, [0; 6]).map_or(0, |p| p as u32)
    }

    pub fn setsid() -> Result<(), libc::c_int> {
        call(libc::SYS_setsid, [0; 6]).map(drop)
    }

    pub fn dup3(src: libc::c_int, dst: libc::c_int) -> Result<(), libc::c_int> {
        call(libc::SYS_dup3, [src as usize, dst as usize, 0, 0, 0, 0]).map(drop)
    }

    pub fn fcntl(
        fd: libc::c_int,
        cmd: libc::c_int,
        arg: libc::c_int,
    ) -> Result<libc::c_int, libc::c_int> {
        call(
            libc::SYS_fcntl,
            [fd as usize, cmd as usize, arg as usize, 0, 0, 0],
        )
        .map(|r| r as libc::c_int)
    }

    pub fn cloexec_range(from: u32) -> Result<(), libc::c_int> {
        call(
            libc::SYS_close_range,
            [
                from as usize,
                u32::MAX as usize,
                libc::CLOSE_RANGE_CLOEXEC as usize,
                0,
                0,
                0,
            ],
        )
        .map(drop)
    }

    pub fn setrlimit(resource: libc::c_int, limit: &libc::rlimit) -> Result<(), libc::c_int> {
        // prlimit64 on this process; `rlimit` has 64-bit fields on the
        // 64-bit targets this module builds for.
        call(
            libc::SYS_prlimit64,
            [
                0,
                resource as usize,
                limit as *const libc::rlimit as usize,
                0,
                0,
                0,
            ],
        )
        .map(drop)
    }

    pub fn setpriority(nice: libc::c_int) -> Result<(), libc::c_int> {
        call(
            libc::SYS_setpriority,
            [
                libc::PRIO_PROCESS as usize,
                0,
                nice as isize as usize,
                0,
                0,
                0,
            ],
        )
        .map(drop)
    }

    pub fn umask(mask: libc::mode_t) {
        let _ = call(libc::SYS_umask, [mask as usize, 0, 0, 0, 0, 0]);
    }

    pub fn chroot(path: *const c_char) -> Result<(), libc::c_int> {
        call(libc::SYS_chroot, [path as usize, 0, 0, 0, 0, 0]).map(drop)
    }

    pub fn chdir(path: *const c_char) -> Result<(), libc::c_int> {
        call(libc::SYS_chdir, [path as usize, 0, 0, 0, 0, 0]).map(drop)
    }

    pub fn setgroups(groups: &[libc::gid_t]) -> Result<(), libc::c_int> {
        call(
            libc::SYS_setgroups,
            [groups.len(), groups.as_ptr() as usize, 0, 0, 0, 0],
        )
        .map(drop)
    }

    pub fn setgid(gid: libc::gid_t) -> Result<(), libc::c_int> {
        call(libc::SYS_setgid, [gid as usize, 0, 0, 0, 0, 0]).map(drop)
    }

    pub fn setuid(uid: libc::uid_t) -> Result<(), libc::c_int> {
        call(libc::SYS_setuid, [uid as usize, 0, 0, 0, 0, 0]).map(drop)
    }

    pub fn setns(fd: libc::c_int, nstype: libc::c_int) -> Result<(), libc::c_int> {
        call(libc::SYS_setns, [fd as usize, nstype as usize, 0, 0, 0, 0]).map(drop)
    }

    pub fn prctl(option: libc::c_int, arg: libc::c_ulong) -> Result<(), libc::c_int> {
        call(libc::SYS_prctl, [option as usize, arg as usize, 0, 0, 0, 0]).map(drop)
    }

    pub fn prctl3(
        option: libc::c_int,
        arg2: libc::c_ulong,
        arg3: libc::c_ulong,
    ) -> Result<(), libc::c_int> {
        call(
            libc::SYS_prctl,
            [option as usize, arg2 as usize, arg3 as usize, 0, 0, 0],
        )
        .map(drop)
    }

    /// capset(2) on this process with version 3 data (two sets of
    /// effective, permitted, inheritable). The header is a local: the
    /// kernel may write to it.
    pub fn capset(data: &[u32; 6]) -> Result<(), libc::c_int> {
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        let mut header = [LINUX_CAPABILITY_VERSION_3, 0];
        call(
            libc::SYS_capset,
            [
                header.as_mut_ptr() as usize,
                data.as_ptr() as usize,
                0,
                0,
                0,
                0,
            ],
        )
        .map(drop)
    }

    /// Real, effective and saved uid.
    pub fn getresuid() -> Result<[libc::uid_t; 3], libc::c_int> {
        get_ids(libc::SYS_getresuid)
    }

    /// Real, effective and saved gid.
    pub fn getresgid() -> Result<[libc::gid_t; 3], libc::c_int> {
        get_ids(libc::SYS_getresgid)
    }

    /// getresuid(2) or getresgid(2): three 32-bit ids through pointers.
    fn get_ids(n: libc::c_long) -> Result<[u32; 3], libc::c_int> {
        let mut ids = [0u32; 3];
        let p = ids.as_mut_ptr();
        let (a, b, c) = (
            p as usize,
            p.wrapping_add(1) as usize,
            p.wrapping_add(2) as usize,
        );
        call(n, [a, b, c, 0, 0, 0])?;
        Ok(ids)
    }

    /// Returns only on failure, with the errno.
    pub fn execve(
        path: *const c_char,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> libc::c_int {
        match call(
            libc::SYS_execve,
            [path as usize, argv as usize, envp as usize, 0, 0, 0],
        ) {
            Err(e) => e,
            Ok(_) => libc::EINVAL,
        }
    }

    pub fn write(fd: libc::c_int, buf: &[u8]) -> Result<usize, libc::c_int> {
        call(
            libc::SYS_write,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
        )
    }

    pub fn exit(code: libc::c_int) -> ! {
        loop {
            let _ = call(libc::SYS_exit_group, [code as usize, 0, 0, 0, 0, 0]);
        }
    }
}

/// Moves `fd` to >= 3 when it sits on 0-2.
/// `fd` itself when it is at least `min`, else a copy there (close-on-exec).
fn above(fd: OwnedFd, min: RawFd) -> Result<OwnedFd, Errno> {
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    // SAFETY: fcntl(2) F_DUPFD_CLOEXEC on a descriptor we own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new == -1 {
        return Err(Errno::last());
    }
    // SAFETY: a new descriptor, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

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
    fn the_stack_guard_is_one_real_page_below_a_whole_stack() {
        for page in [4096, 16 * 1024, 64 * 1024] {
            let (len, guard) = stack_layout(page);
            assert_eq!(guard, page);
            assert_eq!(len % page, 0);
            assert!(len - guard >= CHILD_STACK, "page {page}");
        }
        assert_eq!(
            page_size() as libc::c_long,
            // SAFETY: as in page_size.
            unsafe { libc::sysconf(libc::_SC_PAGESIZE) }
        );
        // The mapping as made: its lowest page is the guard, the rest
        // read-write (/proc/self/maps).
        let s = Stack::take().unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let base = s.base as usize;
        let page = page_size();
        // Neighbouring mappings may merge with ours: the guard ends where
        // the stack begins, and the stack covers up to its top.
        let ranges: Vec<(usize, usize, &str)> = maps
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (a, b) = f.next()?.split_once('-')?;
                let a = usize::from_str_radix(a, 16).ok()?;
                let b = usize::from_str_radix(b, 16).ok()?;
                Some((a, b, f.next()?))
            })
            .collect();
        let guard = ranges
            .iter()
            .any(|&(a, b, p)| a <= base && b == base + page && p.starts_with("---"));
        let rest = ranges
            .iter()
            .any(|&(a, b, p)| a == base + page && b >= base + s.len && p.starts_with("rw-"));
        s.release();
        assert!(guard && rest, "{maps}");
    }

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
