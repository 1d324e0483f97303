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

/// Big blocks straight from the OS and back to it when freed: glibc keeps
/// a freed block above its (self-raising) threshold on the heap, so each
/// argon2 check's 19 MiB stayed resident until the next trim, and a login
/// storm held hundreds of MiB between trims. At 1 MiB only such blocks are
/// affected: frames and buffers stay on the heap.
pub fn return_big_blocks_at_once() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; called once at
    // start, before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
