//! The PostgreSQL source: a logical-replication connection that streams `pgoutput` messages.

pub mod pgoutput;
pub mod replication;
pub mod types;
