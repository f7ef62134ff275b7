//! `gateway`: the S.E.E. mutual-TLS edge gateway. See `gateway --help`.

use clap::Parser;

// mimalloc unless built with `--features system-allocator` (for heap profilers such as
// heaptrack or valgrind massif, which see only the C allocator).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns the calling thread's freed pages to the OS now (see `gateway::memory`).
#[cfg(not(feature = "system-allocator"))]
fn release_freed_memory() {
    // SAFETY: mi_collect has no preconditions; `true` also purges pages whose purge delay
    // has not expired yet.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Returns freed heap memory to the OS now (see `gateway::memory`).
#[cfg(feature = "system-allocator")]
fn release_freed_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn main() {
    gateway::memory::set_release_hook(release_freed_memory);
    let cli = gateway::cli::Cli::parse();
    match gateway::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
