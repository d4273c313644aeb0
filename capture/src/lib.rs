//! ordo, the capture daemon: reads a source database's log, runs each change through its KCOP
//! chain, produces the records to Kafka and appends one commit record per transaction.

pub mod postgres;
