//! `ordo-custom`: the ordo daemon with the `big-orders` KCOP registered, and every subcommand
//! of `ordo` (`run`, `check`, `status`, `tail`, `config schema`, `completions`).
//!
//! Example: ordo-custom run --config examples/custom-kcop/ordo.yaml

use std::process::ExitCode;
use std::sync::Arc;

use ordo_capture::routes::{KcopFactory, KcopRegistry};
use ordo_example_custom_kcop::big_orders;

fn main() -> ExitCode {
    let mut registry = KcopRegistry::default();
    let factory: KcopFactory = Arc::new(big_orders::build);
    registry.register(big_orders::NAME, factory);
    ordo_capture::cli::main_with(registry)
}
