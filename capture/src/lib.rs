//! ordo, the capture daemon: reads a source database's log, runs each change through its KCOP
//! chain, produces the records to Kafka and appends one commit record per transaction to the
//! commit stream, which is also the daemon's checkpoint.
//!
//! - [`source`]: the contract between a source reader and the pipeline.
//! - [`postgres`]: the PostgreSQL reader (replication protocol, pgoutput, snapshot).
//! - [`pipeline`] and [`routes`]: changes through each table's KCOPs.
//! - [`publisher`]: the producer, delivery tracking and the commit stream.
//! - [`daemon`]: all of it wired together for `ordo run`.
//! - [`resnapshot`]: `ordo snapshot --table`, the incremental re-snapshot of one table.
//! - [`check`] and [`status`]: `ordo check` and `ordo status`.
//! - [`cli`]: the `ordo` command line, for the `ordo` binary and custom builds with their own
//!   KCOPs ([`cli::main_with`]).
//! - [`metrics`] and [`notify`]: Prometheus metrics, `/health`, systemd readiness and watchdog.

pub mod check;
pub mod cli;
pub mod daemon;
/// Entry points for the fuzz targets in `fuzz/`: the log decoders fed without a server. Not a
/// stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::mysql::fuzzing::{Images, event, event_body, rows_against};
    pub use crate::postgres::decoder::decode_offline;
}
pub mod metrics;
pub mod mysql;
pub mod notify;
pub mod pipeline;
pub mod postgres;
pub mod publisher;
pub mod resnapshot;
pub mod routes;
pub mod source;
pub mod status;
pub mod tail;
pub mod tls;
