//! The child's system calls, raw (inline assembly), so that no errno
//! (superd's, in the memory the child shares) is ever written: each
//! returns the errno itself. Also `clone3` itself, which must switch
//! stacks in the same instruction sequence.

#![allow(unsafe_code)]

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

/// sched_setaffinity(2) of the calling process to `set`.
pub fn sched_setaffinity(set: &libc::cpu_set_t) -> Result<(), libc::c_int> {
    call(
        libc::SYS_sched_setaffinity,
        [
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            set as *const libc::cpu_set_t as usize,
            0,
            0,
            0,
        ],
    )
    .map(drop)
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

/// close_range(2) of `[from, ~0U]` with `CLOSE_RANGE_UNSHARE`: a
/// descriptor table of the caller's own holding only what lies below
/// `from`.
pub fn close_range_unshare(from: u32) -> Result<(), libc::c_int> {
    call(
        libc::SYS_close_range,
        [
            from as usize,
            u32::MAX as usize,
            libc::CLOSE_RANGE_UNSHARE as usize,
            0,
            0,
            0,
        ],
    )
    .map(drop)
}

pub fn unshare(flags: libc::c_int) -> Result<(), libc::c_int> {
    call(libc::SYS_unshare, [flags as usize, 0, 0, 0, 0, 0]).map(drop)
}

/// Wakes one waiter on `word` (shared futex: the kernel's
/// `CLONE_CHILD_CLEARTID` wake on the same word is a shared one too).
pub fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    let _ = call(
        libc::SYS_futex,
        [
            word.as_ptr() as usize,
            libc::FUTEX_WAKE as usize,
            1,
            0,
            0,
            0,
        ],
    );
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

pub fn exit(code: libc::c_int) -> ! {
    loop {
        let _ = call(libc::SYS_exit_group, [code as usize, 0, 0, 0, 0, 0]);
    }
}
