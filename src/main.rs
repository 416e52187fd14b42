//! Parse flags → load config → run command → exit code. Nothing else.

/// mimalloc for everything, DuckDB's C++ included (see `store::alloc`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator's options, set before any library's constructor allocates.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".preinit_array")]
static TUNE_ALLOCATOR: unsafe extern "C" fn(
    std::ffi::c_int,
    *const *const std::ffi::c_char,
    *const *const std::ffi::c_char,
) = pluvo_warehouse::store::alloc::tune;

fn main() -> std::process::ExitCode {
    pluvo_warehouse::cli::main()
}
