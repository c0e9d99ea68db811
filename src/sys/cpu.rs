//! The CPUs superd may run on (sched_setaffinity(2)): read, narrowed to
//! the one it runs on, applied (superd.8, THE CHILD).

use std::io;

/// A set of CPUs (sched_setaffinity(2)).
#[derive(Clone, Copy)]
pub struct CpuMask(pub libc::cpu_set_t);

impl std::fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET reads one bit of the set, `c` below its size.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &self.0) })
            .collect();
        write!(f, "CpuMask({cpus:?})")
    }
}

impl CpuMask {
    /// The CPUs superd may run on now.
    pub fn current() -> io::Result<CpuMask> {
        // SAFETY: an all-zero cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sched_getaffinity(2) writes at most `size` bytes into `set`.
        let ret =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if ret == 0 {
            Ok(CpuMask(set))
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The one CPU superd runs on now, within this set, when the set has
    /// another.
    pub fn narrowed_to_current(&self) -> Option<CpuMask> {
        // SAFETY: sched_getcpu(3) reads the CPU number (vDSO); no memory.
        let cpu = unsafe { libc::sched_getcpu() };
        let cpu = usize::try_from(cpu).ok()?;
        // SAFETY: CPU_COUNT reads the set.
        let several = unsafe { libc::CPU_COUNT(&self.0) } > 1;
        if !several || cpu >= libc::CPU_SETSIZE as usize {
            return None;
        }
        // SAFETY: CPU_ISSET reads one bit of the set, `cpu` below its size.
        if !unsafe { libc::CPU_ISSET(cpu, &self.0) } {
            return None;
        }
        // SAFETY: an all-zero cpu_set_t is a valid empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: CPU_SET writes one bit of the set, `cpu` below its size.
        unsafe { libc::CPU_SET(cpu, &mut one) };
        Some(CpuMask(one))
    }

    /// Makes this set superd's.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: sched_setaffinity(2) reads `size` bytes of the set.
        let ret =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Whether two sets hold the same CPUs.
    pub fn same(&self, other: &CpuMask) -> bool {
        // SAFETY: CPU_EQUAL compares two whole sets.
        unsafe { libc::CPU_EQUAL(&self.0, &other.0) }
    }
}
