//! Small raw calls that have no safe wrapper in our dependencies, each one
//! line of unsafe with its reason.

#![allow(unsafe_code)]

/// Returns freed heap memory to the kernel (glibc keeps the peak of a large
/// configuration load otherwise).
pub fn trim_heap() {
    // SAFETY: malloc_trim(3) only releases free memory of the allocator;
    // it touches nothing the program owns.
    unsafe {
        libc::malloc_trim(0);
    }
}
