//! Everything after the clone: the child sequence from signals to execve,
//! or the failure report and `_exit(127)`. Built from [`Child`], which the
//! parent prepared before the clone (see the parent side in `super`).
//!
//! The rule for this module: the child makes only raw system calls
//! ([`syscall`], which never touch errno) on data prepared before the
//! clone. It never allocates, never logs (fd 2 belongs to the client),
//! never panics and never returns: it ends in `execve` or `_exit`.

#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::report::encode;
use super::syscall;
use super::{Step, TABLE_OWN};
use crate::plan::SpawnPlan;

/// A failed step and the errno it left.
struct Failure(Step, libc::c_int);

// prctl(2) options (linux/prctl.h).
const PR_SET_KEEPCAPS: libc::c_int = 8;
const PR_SET_NO_NEW_PRIVS: libc::c_int = 38;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_RAISE: libc::c_ulong = 2;

/// The entry point of the cloned child.
pub(super) extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the boxed `Child` that `spawn` passed to clone, kept
    // alive by its `Pending` until this child is past exec.
    let child = unsafe { &*(arg as *const Child) };
    child.run()
}

/// Everything the child needs, as raw values; built before the clone.
pub(super) struct Child {
    /// Kept alive by the `Rc` in `Pending`.
    pub(super) plan: *const SpawnPlan,
    pub(super) path: *const libc::c_char,
    pub(super) envp: *const *const libc::c_char,
    /// The socket for fds 0 and 1, >= 3.
    pub(super) sock: RawFd,
    /// What goes on fd 2 (the socket, a pipe or /dev/null), >= 3.
    pub(super) stderr: RawFd,
    /// `stderr` is the write end of the `stderr: log` pipe, made
    /// non-blocking with its read end: blocking again once on fd 2.
    pub(super) stderr_pipe: bool,
    /// `Some(n)`: the kernel lacks `CLOSE_RANGE_CLOEXEC`; mark 3..n by hand.
    pub(super) fd_limit: Option<RawFd>,
    /// The signals to reset to their default disposition.
    pub(super) signals: &'static [libc::c_int],
    /// `pass: listen_fds`: the sockets for fds 3 … 3+n-1, in order; empty
    /// for stdio.
    pub(super) listen: Vec<RawFd>,
    /// The first of n free numbers above every fd the child uses, where it
    /// parks the sockets on their way down to 3 … 3+n-1.
    pub(super) park: RawFd,
    /// Room for the digits of the child's pid after `LISTEN_PID=` in its
    /// environment (see [`Env::pid_slot`]); null for stdio.
    pub(super) pid_slot: *mut u8,
    /// One above every descriptor the child uses: it keeps a copy of only
    /// those below (see [`Child::own_fd_table`]).
    pub(super) fds_below: RawFd,
    /// Where the child is on its way to exec, and the clone's
    /// `CLONE_CHILD_CLEARTID` word: `TABLE_SHARED` (or `TABLE_WAITED_ON`)
    /// while it shares superd's descriptor table, `TABLE_OWN` once it has
    /// its own (see [`Child::let_superd_go_on`]), 0 once the kernel
    /// cleared it at exec or exit.
    pub(super) table: AtomicU32,
    /// The failure report (see `report::encode`), written before
    /// `_exit(127)`; 0 for none. superd reads it once `table` is 0.
    pub(super) failure: AtomicU64,
    /// The CPUs to give the program: superd's own, when superd was pinned
    /// to one CPU for this start (see `spawn_with`).
    pub(super) cpus: Option<libc::cpu_set_t>,
}

impl Child {
    /// The child side: a descriptor table of its own, then set up, exec,
    /// or report and `_exit(127)`.
    fn run(&self) -> ! {
        let own = self.own_fd_table();
        if let Err(errno) = own {
            self.report(Failure(Step::Fds, errno));
        }
        self.let_superd_go_on();
        if own.is_err() {
            syscall::exit(127);
        }
        let Err(failure) = self.setup_and_exec();
        self.report(failure);
        syscall::exit(127)
    }

    /// The child's first step: it was started sharing superd's descriptor
    /// table (`CLONE_FILES`, so that the clone copied none of it) and
    /// takes a copy of only the descriptors below `fds_below`, every one
    /// it uses among them (close_range(2) `CLOSE_RANGE_UNSHARE`, Linux
    /// 5.9; the kernel copies nothing at or above the range's start when
    /// the range runs to the end). Where the kernel lacks that flag (or
    /// close_range), unshare(2) copies the whole table, as a plain clone
    /// would have.
    fn own_fd_table(&self) -> Result<(), libc::c_int> {
        match syscall::close_range_unshare(self.fds_below as u32) {
            Ok(()) => Ok(()),
            Err(_) => syscall::unshare(libc::CLONE_FILES),
        }
    }

    /// Tells superd, waiting in [`super::wait_for_own_table`], that this
    /// child no longer shares its descriptor table (or failed to stop and
    /// reported so): `table` to `TABLE_OWN` (not 0, which says "past exec
    /// or exited" and is the kernel's to write) and, if superd sleeps on
    /// it, a futex wake. The kernel clears it and wakes too when the
    /// child exits or execs (`CLONE_CHILD_CLEARTID`), so superd never
    /// waits on a child that died first.
    fn let_superd_go_on(&self) {
        if self.table.swap(TABLE_OWN, Ordering::AcqRel) == super::TABLE_WAITED_ON {
            syscall::futex_wake(&self.table);
        }
    }

    /// Writes the failure report into superd's memory (one store), where
    /// superd finds it once the kernel has cleared `table` at the exit
    /// that follows.
    fn report(&self, Failure(step, errno): Failure) {
        self.failure.store(encode(step, errno), Ordering::Release);
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
            match syscall::sigaction_default(sig) {
                Ok(()) | Err(libc::EINVAL) => {}
                Err(e) => return Err(Failure(Step::Signals, e)),
            }
        }
        syscall::unblock_all().map_err(at(Step::Signals))?;

        // 2. Own session and process group, so `timeout` and shutdown can
        // signal the group with kill(-pid); what leaves it (setsid) is
        // followed by its cgroup or superd as subreaper (crate::tree).
        syscall::setsid().map_err(at(Step::Setsid))?;

        // 3. The socket on 0 and 1, the stderr target on 2. Sources are >= 3
        // (see `spawn`), so dup3 makes fresh descriptors without CLOEXEC.
        // With listen_fds, /dev/null on 0 and the stderr target on 1 and 2.
        let out = if self.listen.is_empty() {
            self.sock
        } else {
            self.stderr
        };
        for (src, dst) in [(self.sock, 0), (out, 1), (self.stderr, 2)] {
            syscall::dup3(src, dst).map_err(at(Step::Dup2))?;
        }
        // The daemon's socket is non-blocking; legacy programs expect a
        // blocking one. O_NONBLOCK lives in the file description shared with
        // the daemon's copy, which the daemon closes (nowait) or resets when
        // this child exits (wait).
        let flags = syscall::fcntl(0, libc::F_GETFL, 0).map_err(at(Step::Dup2))?;
        if flags & libc::O_NONBLOCK != 0 {
            syscall::fcntl(0, libc::F_SETFL, flags & !libc::O_NONBLOCK).map_err(at(Step::Dup2))?;
        }
        // The log pipe's write end is a file description of its own (the
        // read end keeps its flags) with no other status flag: 0 clears
        // O_NONBLOCK.
        if self.stderr_pipe {
            syscall::fcntl(2, libc::F_SETFL, 0).map_err(at(Step::Dup2))?;
        }

        // 3b. listen_fds: the sockets on 3 … 3+n-1 and LISTEN_PID.
        self.listen_fds()?;

        // 4. No other fd survives exec: one close_range pass marks them all
        // close-on-exec (the child has its own fd table since its first
        // step).
        self.cloexec_above_stdio()?;

        // 5. Limits, priority and umask, while still privileged (raising a
        // hard limit or lowering nice needs root).
        for (resource, limit) in plan.rlimits() {
            syscall::setrlimit(*resource as libc::c_int, limit).map_err(at(Step::Rlimit))?;
        }
        if let Some(nice) = plan.nice() {
            syscall::setpriority(nice).map_err(at(Step::Nice))?;
        }
        syscall::umask(plan.umask());

        // 5b. The service's namespaces (superd.yaml(5), "Fences"), made
        // when the configuration loaded: joined while still root (setns
        // needs CAP_SYS_ADMIN), before chroot and cwd, which are then
        // resolved inside them. Joining the mount namespace moves root and
        // cwd to its root.
        let fences = plan.fences();
        if let Some(ns) = &fences.namespaces {
            if let Some(fd) = ns.net_fd() {
                syscall::setns(fd, libc::CLONE_NEWNET).map_err(at(Step::SetnsNet))?;
            }
            if let Some(fd) = ns.mnt_fd() {
                syscall::setns(fd, libc::CLONE_NEWNS).map_err(at(Step::SetnsMnt))?;
            }
        }

        // 6. chroot, then cwd inside it (superd.yaml(5), "chroot": paths are inside the chroot).
        if let Some(root) = plan.chroot() {
            syscall::chroot(root.as_ptr()).map_err(at(Step::Chroot))?;
        }
        syscall::chdir(plan.cwd().as_ptr()).map_err(at(Step::Chdir))?;

        // 7. Identity: groups, then gid, then uid (after setuid we could no
        // longer change the others), then check it cannot be undone.
        if let Some(c) = plan.credentials() {
            if c.set_groups {
                syscall::setgroups(&c.groups).map_err(at(Step::Setgroups))?;
            }
            syscall::setgid(c.gid).map_err(at(Step::Setgid))?;
            // `capabilities`: the permitted set survives setuid only with
            // PR_SET_KEEPCAPS (capabilities(7)).
            if fences.capset.is_some() {
                syscall::prctl(PR_SET_KEEPCAPS, 1).map_err(at(Step::Capabilities))?;
            }
            syscall::setuid(c.uid).map_err(at(Step::Setuid))?;
            self.verify(c.uid, c.gid)?;
        }

        // 7b. Fences on the new identity. The listed capabilities become
        // the permitted and inheritable sets (all others are dropped; the
        // effective set stays empty), then ambient, so that exec gives
        // them to the program. no_new_privs last: from exec on, no setuid
        // bit or file capability adds anything.
        if let Some(data) = &fences.capset {
            syscall::capset(data).map_err(at(Step::Capabilities))?;
            for &cap in &fences.ambient {
                syscall::prctl3(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
                    .map_err(at(Step::Capabilities))?;
            }
        }
        if fences.no_new_privs {
            syscall::prctl(PR_SET_NO_NEW_PRIVS, 1).map_err(at(Step::NoNewPrivs))?;
        }

        // superd's CPUs, when it started this child pinned to one (the
        // program runs where the scheduler puts it, as without the pin).
        if let Some(set) = &self.cpus {
            syscall::sched_setaffinity(set).map_err(at(Step::Exec))?;
        }

        // 8. exec. On success the kernel clears `table` (and the report
        // pipe, if any, closes: close-on-exec, superd hears EOF).
        let e = syscall::execve(self.path, plan.argv_ptr(), self.envp);
        Err(Failure(Step::Exec, e))
    }

    /// `pass: listen_fds` (superd.yaml(5), SOCKET ACTIVATION): socket i on
    /// fd 3+i, blocking, not close-on-exec; then the child's pid, in
    /// decimal, into the room after `LISTEN_PID=`. The sockets go up to
    /// `park` first (above every source and the wake pipe), then down:
    /// no dup3 lands on a descriptor still to be used. No allocation: the
    /// list and the room were made before the clone.
    fn listen_fds(&self) -> Result<(), Failure> {
        if self.listen.is_empty() {
            return Ok(());
        }
        let at = |errno| Failure(Step::Fds, errno);
        for (i, &src) in self.listen.iter().enumerate() {
            syscall::dup3(src, self.park + i as RawFd).map_err(at)?;
        }
        for i in 0..self.listen.len() as RawFd {
            let fd = 3 + i;
            syscall::dup3(self.park + i, fd).map_err(at)?;
            let flags = syscall::fcntl(fd, libc::F_GETFL, 0).map_err(at)?;
            if flags & libc::O_NONBLOCK != 0 {
                syscall::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK).map_err(at)?;
            }
        }
        if !self.pid_slot.is_null() {
            let mut pid = syscall::getpid();
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
            None => syscall::cloexec_range(first as u32).map_err(|e| Failure(Step::Fds, e)),
            Some(limit) => {
                for fd in first..limit {
                    match syscall::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) {
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
        let ids = syscall::getresuid().map_err(|e| Failure(Step::Verify, e))?;
        if ids != [uid, uid, uid] {
            return fail;
        }
        let ids = syscall::getresgid().map_err(|e| Failure(Step::Verify, e))?;
        if ids != [gid, gid, gid] {
            return fail;
        }
        // It must fail here.
        if uid != 0 && syscall::setuid(0).is_ok() {
            return fail;
        }
        Ok(())
    }
}
