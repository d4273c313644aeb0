//! End-to-end suites for ordo against real servers: PostgreSQL, MariaDB and a Kafka-protocol
//! broker (nisshi), all started by `scripts/stack up` on loopback under `target/stack/`.
//!
//! The suites live in `tests/tests/`; this library is their shared support code. [`stack::stack`]
//! finds the running servers (from the `ORDO_TEST_*` environment variables, else from the
//! `target/stack/env` file that `scripts/stack up` writes) and panics when there are none, so a
//! suite never passes without having talked to its servers.

pub mod capture;
pub mod config;
pub mod invariant;
pub mod kafka;
pub mod mariadb_server;
pub mod ops;
pub mod process;
pub mod stack;
pub mod tls;
