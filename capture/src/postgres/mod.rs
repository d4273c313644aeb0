//! The PostgreSQL source: a logical-replication connection that streams `pgoutput` messages.

pub mod catalog;
pub mod check;
pub mod decoder;
pub mod pgoutput;
pub mod replication;
pub mod snapshot;
pub mod source;
pub mod types;
