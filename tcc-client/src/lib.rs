//! ordo's transactionally consistent consumer and the commit-stream format.

pub mod commit_stream;
