//! The child's stack: an anonymous mapping with a guard page, taken before
//! the clone and pooled once the child is past exec.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ptr;

use nix::errno::Errno;

/// Size of a child's stack: the child sequence is a few small frames of
/// syscalls; glibc's posix_spawn uses far less. Only touched pages count.
pub(super) const CHILD_STACK: usize = 64 * 1024;

/// Stacks kept for reuse at the most (each is mapped once).
const STACK_POOL: usize = 64;

thread_local! {
    /// Stacks of children that are past exec, for the next ones.
    static STACKS: RefCell<Vec<Stack>> = const { RefCell::new(Vec::new()) };
}

/// A child's stack: an anonymous mapping with a guard page at the bottom.
pub(super) struct Stack {
    pub(super) base: *mut libc::c_void,
    /// The whole mapping, guard page included (see [`stack_layout`]).
    pub(super) len: usize,
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
    pub(super) fn take() -> Result<Stack, Errno> {
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
    pub(super) fn top(&self) -> *mut libc::c_void {
        (self.base as usize + self.len) as *mut libc::c_void
    }

    /// Back to the pool (or unmapped) once no child runs on it.
    pub(super) fn release(self) {
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
}
