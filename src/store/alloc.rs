//! The C allocator's settings for this process. DuckDB allocates its 256 KiB blocks with
//! `malloc`; glibc's defaults (an arena per thread, a `mmap` threshold that rises after each
//! free) keep freed blocks in the heap, so the process's resident memory grows with the
//! warehouse even though DuckDB stays under its memory limit. Fixed thresholds make large
//! blocks go back to the kernel when freed.
//!
//! Measured by `bench sync`-style runs (latency 0, 2 cores, DuckDB limit 32 MB): peak RSS of
//! the 10k-user sync 98 → 90 MB, of the 100k-user sync 138 → 109 MB.

/// Allocations from this size up are `mmap`ed and returned to the kernel on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Tune the allocator; call once, first thing in `main`. A no-op off glibc.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread starts.
    unsafe {
        // Setting the thresholds also turns off glibc's dynamic raising of them.
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MMAP_THRESHOLD);
        // Two heaps instead of eight per core: DuckDB's and tokio's threads share them.
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
