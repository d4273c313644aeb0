//! The `ordo` command: the daemon with the built-in KCOPs only. The command line itself lives in
//! [`ordo_capture::cli`], so that a custom build can register its own KCOPs and call the same
//! entry point (see `examples/custom-kcop`).
//!
//! Exit codes: 0 ok; 2 configuration or prerequisite error; 1 runtime failure.

use std::process::ExitCode;

use ordo_capture::routes::KcopRegistry;

fn main() -> ExitCode {
    ordo_capture::cli::main_with(KcopRegistry::default())
}
