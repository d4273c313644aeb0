//! The `ordo` command: the daemon with the built-in KCOPs only. The command line itself lives in
//! [`ordo_capture::cli`], so that a custom build can register its own KCOPs and call the same
//! entry point (see `examples/custom-kcop`).
//!
//! Exit codes: 0 ok; 2 configuration or prerequisite error; 1 runtime failure.

use std::process::ExitCode;

use ordo_capture::routes::KcopRegistry;

/// jemalloc for the whole process, C code included (`unprefixed_malloc_on_supported_platforms`
/// makes it `malloc`/`free`): librdkafka allocates each message on the pipeline thread and frees
/// it on the delivery thread, a pattern under which glibc's allocator spent about a quarter of
/// the daemon's CPU time; with jemalloc the end-to-end benchmark ran about a third faster.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    ordo_capture::cli::main_with(KcopRegistry::default())
}
