//! Starting a child, parent side: the clone, the fds and memory lent to the
//! child until it is past exec ([`Pending`]), which reads the failure report
//! (`report.rs`) the child leaves in that memory. What runs after the clone
//! is in `child.rs`, its raw system calls in `syscall.rs`.

#![allow(unsafe_code)]

// The child is started with `clone3(CLONE_VM)` (or `clone` where the
// kernel or a seccomp filter lacks clone3) on a stack of its own: it
// shares superd's memory until execve, so no page table is copied and no
// page faults in copy-on-write (fork's cost grows with the parent's
// mappings). Unlike posix_spawn's CLONE_VFORK, superd is not suspended
// until the child has exec'd: under load a new child waits for a CPU behind
// the running ones, and superd goes on accepting meanwhile. So the child
// runs beside superd in the same memory: it must not write anything superd
// uses (see [`child`]), and what it reads (the plan, its environment, its
// stack) is kept alive by the [`Pending`] superd holds until the child is
// past exec. The clone's CLONE_CHILD_CLEARTID word says when that is: the
// kernel clears it when the child execs or exits (as it does for a thread
// library's stacks), and a child that fails before exec first stores its
// report beside it. Nothing wakes superd for that by itself: where the
// loop must know at once (see [`spawn_with_wake`]), a close-on-exec pipe
// is added, whose EOF follows the clear.

use crate::sys::CloneArgs;
pub use crate::sys::{CpuMask, clone3_works, pidfd_works};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::Pid;

use crate::plan::{ConnInfo, Env, SpawnPlan};
use crate::service::StderrMode;

mod child;
pub mod fdpark;
mod fds;
mod report;
pub mod sandbox;
mod stack;
mod syscall;

use child::{Child, child_main};
use fds::{above, above_stdio, close_fallback_limit, dev_null, dup_above_stdio};
pub use report::{ExecFailure, Step};
use stack::{CHILD_STACK, Stack};

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
/// its stack) and writes (its `table` word, its failure report) stays
/// alive and in place here until the child is past exec or has exited,
/// which the word says (see [`Pending::poll`]).
pub struct Pending {
    /// Read end of the close-on-exec wake pipe, where one was asked for
    /// (see [`spawn_with_wake`]): readable (EOF) once the child is past
    /// exec or has exited. Never read: the outcome is in `lent`.
    wake: Option<OwnedFd>,
    /// `Some` once the child is past exec (or exited): its failure, if
    /// any.
    outcome: Option<Option<ExecFailure>>,
    /// What the child uses until it is past exec; `None` once it is.
    lent: Option<Lent>,
}

/// The memory a child before exec uses, all in one place so that it is
/// either freed together (the child is past exec) or leaked together.
/// `child` is boxed: the kernel and the child write into it by address.
struct Lent {
    child: Box<Child>,
    _env: Env<'static>,
    _plan: Rc<SpawnPlan>,
    stack: Stack,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("outcome", &self.outcome)
            .field("wake", &self.wake)
            .finish()
    }
}

impl Pending {
    /// The wake pipe, for the event loop to watch (readable when the
    /// outcome is known); `None` when the child was started without one:
    /// then nothing tells the loop, which looks with [`poll`](Self::poll).
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wake.as_ref().map(AsFd::as_fd)
    }

    /// `None` while the child has not reached exec; then `Some(None)` when
    /// it exec'd, `Some(Some(failure))` when it failed and exits 127.
    /// Never blocks, and makes no system call before the outcome is known.
    pub fn poll(&mut self) -> Option<Option<ExecFailure>> {
        if let Some(outcome) = self.outcome {
            return Some(outcome);
        }
        let child = &self.lent.as_ref()?.child;
        // The kernel clears the word (CLONE_CHILD_CLEARTID) when the child
        // execs or exits, after it no longer uses our memory: from exec
        // on, the child runs in memory of its own; and a failed child
        // stored its report before its `_exit`.
        if child.table.load(Ordering::Acquire) != PAST_EXEC {
            return None;
        }
        let outcome = report::decode(child.failure.load(Ordering::Acquire));
        self.outcome = Some(outcome);
        self.wake = None;
        if let Some(lent) = self.lent.take() {
            lent.stack.release();
        }
        Some(outcome)
    }

    /// Waits for the outcome (tests; the loop uses [`poll`](Self::poll)):
    /// asleep on the word, which the kernel wakes when it clears it.
    pub fn wait(&mut self) -> Option<ExecFailure> {
        loop {
            if let Some(outcome) = self.poll() {
                return outcome;
            }
            if let Some(lent) = &self.lent {
                let now = lent.child.table.load(Ordering::Acquire);
                if now != PAST_EXEC {
                    futex_wait(&lent.child.table, now);
                }
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.poll().is_none() {
            // Still before exec (superd is exiting, or the caller gave up):
            // the child may still use what this holds, so it is leaked,
            // never freed under it.
            std::mem::forget(self.lent.take());
        }
    }
}

/// Starts the plan's program on `sock` (blocking in the child) with the
/// environment for `conn`, without waiting for it: the outcome comes later
/// through [`Spawned::exec`], without a wake pipe (see
/// [`spawn_with_wake`]). `Err` only when no child was started (`EAGAIN`,
/// `ENOMEM`, or `EINVAL` for a builtin's plan). Does not reap.
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
    spawn_with_wake(plan, sock, conn, cgroup, false, None)
}

/// As [`spawn`]; with `wake`, the child also gets a close-on-exec pipe
/// (and with `cpus`, it runs the program on those CPUs: see [`spawn_with`])
/// whose read end ([`Pending::wake_fd`]) turns readable once it is past
/// exec or has exited, for a loop that must hear of it at once. It costs
/// a pipe2, an epoll registration, and two closes per child.
pub fn spawn_with_wake(
    plan: &Rc<SpawnPlan>,
    sock: BorrowedFd<'_>,
    conn: &ConnInfo,
    cgroup: Option<BorrowedFd<'_>>,
    wake: bool,
    cpus: Option<CpuMask>,
) -> Result<Spawned, Errno> {
    if plan.listen_fds().is_some() {
        return spawn_listen_fds(plan, &[sock], conn, cgroup);
    }
    spawn_with(plan, sock, conn, Vec::new(), cgroup, wake, cpus)
}

/// `pass: listen_fds` (superd.yaml(5), SOCKET ACTIVATION): starts the
/// plan's program with `socks` on fds 3 and up, in order (blocking, not
/// close-on-exec), /dev/null on fd 0, the log pipe or /dev/null on fds 1
/// and 2, and `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`. As
/// [`spawn_with_wake`] otherwise, always with the wake pipe (wait mode).
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
        true,
        None,
    )
}

/// The one way a child is started: `sock` on fds 0 and 1 (and 2 per the
/// plan's `stderr`), or, with `listen` not empty, /dev/null on fd 0, the
/// stderr target on fds 1 and 2, and `listen` on fds 3 and up; `wake`:
/// with a wake pipe; `cpus`: the CPUs the program gets, when superd is
/// pinned to one for the start (the child inherits the pin; see
/// superd.8, THE CHILD).
fn spawn_with(
    plan: &Rc<SpawnPlan>,
    sock: BorrowedFd<'_>,
    conn: &ConnInfo,
    listen: Vec<RawFd>,
    cgroup: Option<BorrowedFd<'_>>,
    wake: bool,
    cpus: Option<CpuMask>,
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
            // Both ends non-blocking in one call (no fcntl pair per
            // connection): the read end is the event loop's; the write end
            // is a separate file description, which the child makes
            // blocking again on its fd 2 (see `Child::stderr_pipe`).
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
            let w = above_stdio(w)?;
            let fd = w.as_raw_fd();
            (Some(r), Some(w), fd)
        }
        StderrMode::Null => (None, None, dev_null()?),
    };
    // The wake pipe: nothing is written to it; the child's copy of the
    // write end closes at its exec (close-on-exec) or exit, after the
    // kernel cleared the word, and the loop hears EOF.
    let (wake_r, wake_w) = if wake {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // The child's dup3 onto 0-2 must not land on the write end, nor,
        // with listen_fds, its dup3 onto 3 … 3+n-1: it would close early.
        (Some(r), Some(above(w, 3 + listen.len() as RawFd)?))
    } else {
        (None, None)
    };
    // Where the child parks the sockets before it moves them down onto
    // 3 … 3+n-1: above every descriptor it still needs (see
    // `Child::listen_fds`).
    let park = listen
        .iter()
        .chain([sock_fd, stderr_fd].iter())
        .chain(wake_w.as_ref().map(AsRawFd::as_raw_fd).iter())
        .copied()
        .max()
        .unwrap_or(2)
        .max(2 + listen.len() as RawFd)
        + 1;
    // The child keeps a copy of superd's descriptors below this one only
    // (see `Child::own_fd_table`): every one it uses is below.
    let ns = plan.fences().namespaces.as_ref();
    let fds_below = park.max(
        [ns.and_then(|n| n.net_fd()), ns.and_then(|n| n.mnt_fd())]
            .into_iter()
            .flatten()
            .max()
            .map_or(0, |fd| fd + 1),
    );

    let child = Box::new(Child {
        plan: Rc::as_ptr(plan),
        path,
        envp: env.as_ptr(),
        sock: sock_fd,
        stderr: stderr_fd,
        stderr_pipe: stderr_w.is_some(),
        fd_limit: close_fallback_limit(),
        signals: non_default_signals(),
        listen,
        park,
        pid_slot: env.pid_slot(),
        fds_below,
        table: AtomicU32::new(TABLE_SHARED),
        failure: AtomicU64::new(0),
        cpus: cpus.map(|m| m.0),
    });
    let table = child.table.as_ptr();
    let stack = Stack::take()?;
    let arg: *mut libc::c_void = (&*child as *const Child).cast_mut().cast();

    // The child runs `child_main` on `stack`, beside this thread. Signals
    // superd handles are blocked (signalfd), so no handler of superd's runs
    // in the child before it resets them. It starts on superd's descriptor
    // table (CLONE_FILES: the clone copies none of it, however many
    // pidfds and pipes superd holds) and takes its own copy of the few it
    // needs as its first step, while superd waits (see
    // `wait_for_own_table`).
    let mut pidfd: libc::c_int = -1;
    let shared = (libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_CHILD_CLEARTID) as u64;
    let pid = if clone3_works() {
        let mut flags = shared;
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
                child_tid: table as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: stack.base as u64,
                stack_size: CHILD_STACK as u64,
                cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
                ..CloneArgs::default()
            };
            // SAFETY: as for clone below; `args` is read by the kernel
            // during the call only.
            let ret = unsafe { syscall::clone3(&args, child_main, arg) };
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
        // alive until the `table` word says the child is past exec.
        // SAFETY: the child makes only raw syscalls on `child`, kept alive
        // as said; it never returns. The kernel writes only `table` (the
        // ctid word, inside `child`) when the child exits or execs.
        let pid = unsafe {
            libc::clone(
                child_main,
                stack.top(),
                shared as libc::c_int | libc::SIGCHLD,
                arg,
                ptr::null_mut::<libc::pid_t>(),
                ptr::null_mut::<libc::c_void>(),
                table.cast::<libc::pid_t>(),
            )
        };
        if pid == -1 {
            let e = Errno::last();
            stack.release();
            return Err(e);
        }
        pid
    };

    // Nothing of the table may change before the child has its copy (a
    // descriptor it needs closed, or its number given to another file).
    wait_for_own_table(&child.table);
    // The child has its own copies now: ours go, so EOF on the wake pipe
    // means "past exec" and EOF on the stderr pipe "the child and its
    // descendants are done".
    drop(wake_w);
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
            wake: wake_r,
            outcome: None,
            lent: Some(Lent {
                child,
                _env: env,
                _plan: plan.clone(),
                stack,
            }),
        },
    })
}

/// [`Child::table`] before the child has a descriptor table of its own.
const TABLE_SHARED: u32 = 1;
/// The same, with superd asleep on it (futex).
const TABLE_WAITED_ON: u32 = 2;
/// The child has a descriptor table of its own and is not yet past exec
/// (the child's store).
const TABLE_OWN: u32 = 3;
/// Past exec, or exited: the kernel's `CLONE_CHILD_CLEARTID` store, the
/// last write to the word.
const PAST_EXEC: u32 = 0;

/// Waits until the child no longer shares superd's descriptor table: its
/// first step, a few microseconds; asleep on a futex if it has not run yet.
/// Done once the word holds anything else than TABLE_SHARED or
/// TABLE_WAITED_ON: TABLE_OWN, or PAST_EXEC for a child that died first.
fn wait_for_own_table(table: &AtomicU32) {
    loop {
        match table.compare_exchange(
            TABLE_SHARED,
            TABLE_WAITED_ON,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) | Err(TABLE_WAITED_ON) => {}
            Err(_) => return,
        }
        futex_wait(table, TABLE_WAITED_ON);
    }
}

/// Sleeps while `word` holds `value`: at once when it holds another
/// (EAGAIN), or until a wake or a signal (EINTR); callers look again.
fn futex_wait(word: &AtomicU32, value: u32) {
    // SAFETY: futex(2) FUTEX_WAIT on a live word of ours, which the call
    // only reads; shared (not _PRIVATE), as the kernel's
    // CLONE_CHILD_CLEARTID wake is.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            value,
            ptr::null::<libc::timespec>(),
        )
    };
}

/// `CLONE_INTO_CGROUP` (Linux 5.7), the flag of `clone3` only.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `CLONE_PIDFD` (Linux 5.2): the kernel writes a pidfd for the child to
/// `clone_args.pidfd`.
const CLONE_PIDFD: u64 = 0x1000;

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
