//! Giving freed heap memory back to the operating system.
//!
//! After a burst — thousands of logins, each announced to everyone online —
//! glibc's allocator keeps the pages the burst freed, so an idle server
//! looked several KiB per session bigger than what it actually holds.
//! `malloc_trim` returns whole free pages; it is cheap next to the interval.

/// Releases free heap pages (glibc on Linux; elsewhere nothing to do).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and releases the allocator's own
    // free lists; it takes the allocator's locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}
