//! The server's memory allocator: jemalloc on Linux (glibc), with one arena
//! and freed pages handed back within a second.
//!
//! Why not the system allocator: with thousands of idle sessions, glibc kept
//! ~390 bytes a session beyond what the sessions hold (their long-lived
//! blocks — tokio's 128-byte-aligned task cells among them — are allocated
//! between short-lived ones during login and end up scattered over partly
//! used pages); jemalloc's size classes fit those blocks without gaps.
//! One arena: each thread (tokio's workers, the blocking pool's password
//! checks) otherwise gets its own, and a session's blocks are spread over
//! all of them. The figures are in BENCHMARKS.md ("Where an idle session's
//! bytes go").

#[cfg(all(target_os = "linux", target_env = "gnu", feature = "jemalloc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol (a C string) when it starts;
/// `MALLOC_CONF`-style, prefixed as the `tikv-jemalloc-sys` build names it.
/// A background thread purges on time even while the server is idle (jemalloc
/// otherwise purges only when something allocates).
#[cfg(all(target_os = "linux", target_env = "gnu", feature = "jemalloc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static u8> =
    Some(&b"narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);
