//! The process's memory: its allocator, mimalloc (the binary's `#[global_allocator]`, and
//! through its `override` feature also `malloc` for DuckDB's C++), with its options set for a
//! long-running sync whose memory must stay flat; and what the process holds
//! ([`memory_mib`]).
//!
//! Why not glibc's malloc: DuckDB allocates and frees 256 KiB blocks all the time. With glibc's
//! default thresholds freed blocks piled up in the heap (resident memory grew with the
//! warehouse); with a fixed 128 KiB `mmap` threshold (this module until issue 19's last round)
//! every block was a fresh `mmap` whose pages the kernel faults in and zeroes, and `munmap`
//! on free: a quarter of a sync's CPU was the kernel's, and malloc itself another sixth.
//! mimalloc keeps freed memory for reuse and returns it to the kernel after a delay.
//!
//! Measured against the same glibc-built simulator (100k users, 0 ms, full sync into a new
//! file; CPU-seconds user + sys, peak RSS): glibc with the fixed threshold 17.4 s, 187 MiB;
//! mimalloc's defaults 13.3 s, 248 MiB; with the options below 11.4 s, 207 MiB.
//!
//! A `MIMALLOC_<OPTION>` environment variable still wins over the values set here. Off Linux
//! the binary has no `.preinit_array` and runs on mimalloc's defaults.

use std::ffi::{CStr, c_char, c_int};

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// mimalloc's option numbers (the order of `mi_option_e` in its v3 `include/mimalloc.h`, which
/// libmimalloc-sys builds); its Rust bindings name only the older options.
const MI_OPTION_ARENA_EAGER_COMMIT: mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Freed memory goes back to the kernel after this many milliseconds unused (mimalloc's
/// default: 1,000). Long enough for DuckDB to reuse a block it freed a moment ago, short enough
/// to keep the peak flat.
const PURGE_DELAY_MS: i64 = 100;

/// 0: commit an arena's memory as it is used, not the whole (1 GiB) arena at once (mimalloc's
/// default 2 commits eagerly where the kernel overcommits, which the peak RSS showed).
const ARENA_EAGER_COMMIT: i64 = 0;

/// Set the allocator's options, except those the environment sets. The binary runs this from
/// `.preinit_array` on Linux (see `src/main.rs`), before any shared library's constructor:
/// libstdc++'s first `malloc` already reserves mimalloc's first arena, with the options in
/// force at that moment. That early the C library has not set up `getenv` yet, so the
/// environment is the `envp` the C runtime passes to such functions; and nothing here
/// allocates.
///
/// # Safety
/// `envp` is null or a null-terminated array of NUL-terminated strings, as the C runtime
/// passes it.
pub unsafe extern "C" fn tune(
    _argc: c_int,
    _argv: *const *const c_char,
    envp: *const *const c_char,
) {
    let options: [(mi_option_t, &[u8], i64); 2] = [
        (
            MI_OPTION_PURGE_DELAY,
            b"MIMALLOC_PURGE_DELAY=",
            PURGE_DELAY_MS,
        ),
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            b"MIMALLOC_ARENA_EAGER_COMMIT=",
            ARENA_EAGER_COMMIT,
        ),
    ];
    for (option, variable, value) in options {
        // SAFETY: the caller's promise about `envp`; mi_option_set only stores an integer in
        // mimalloc's option table.
        unsafe {
            if !in_environment(envp, variable) {
                mi_option_set(option, value as _);
            }
        }
    }
}

/// Whether `envp` has an entry starting with `prefix` (`NAME=`).
///
/// # Safety
/// As for [`tune`].
unsafe fn in_environment(envp: *const *const c_char, prefix: &[u8]) -> bool {
    if envp.is_null() {
        return false;
    }
    let mut at = envp;
    // SAFETY: the array is null-terminated and each entry is a NUL-terminated string.
    unsafe {
        while !(*at).is_null() {
            if CStr::from_ptr(*at).to_bytes().starts_with(prefix) {
                return true;
            }
            at = at.add(1);
        }
    }
    false
}

/// Resident and peak resident memory of this process in MiB (Linux; 0 elsewhere): what the
/// benchmarks report, and what a merge's debug line shows beside DuckDB's share.
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mib = |name: &str| status_kib(&status, name).map_or(0.0, |kib| kib / 1024.0);
    (mib("VmRSS:"), mib("VmHWM:"))
}

/// A field of a `/proc/<pid>/status` text (`VmHWM:`, `RssAnon:` …), in KiB.
pub fn status_kib(status: &str, name: &str) -> Option<f64> {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_in_the_environment_is_found_by_its_whole_name() {
        let entries = [c"PATH=/bin", c"MIMALLOC_PURGE_DELAY=7"];
        let mut envp: Vec<*const c_char> = entries.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: a null-terminated array of C strings that outlive the calls.
        unsafe {
            assert!(in_environment(envp.as_ptr(), b"MIMALLOC_PURGE_DELAY="));
            assert!(!in_environment(
                envp.as_ptr(),
                b"MIMALLOC_ARENA_EAGER_COMMIT="
            ));
            assert!(!in_environment(envp.as_ptr(), b"MIMALLOC_PURGE="));
            assert!(!in_environment(std::ptr::null(), b"PATH="));
        }
    }
}
