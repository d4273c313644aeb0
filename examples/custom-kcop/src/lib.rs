//! An example of a user KCOP: `big-orders` turns each order whose amount exceeds a threshold
//! into one record on a monitoring topic, and `ordo-custom` is the ordo daemon built with it.
//!
//! A KCOP (Kafka custom operation processor) is anything that implements [`ordo_kcop::Kcop`]:
//! it gets one source operation at a time (the row change with its table schema, the
//! transaction, the source) and appends zero or more Kafka records. The daemon builds one per
//! table and schema version through a factory registered by name in a
//! [`KcopRegistry`](ordo_capture::routes::KcopRegistry), and a config file selects it with
//! `format: custom` and `kcop: <name>`. Everything else (transaction order, the `ordo.*`
//! headers, delivery tracking, commit records, resuming after a restart) is the daemon's.
//!
//! - [`big_orders`]: the KCOP, its options and its factory [`big_orders::build`].
//! - [`amount`]: exact comparison of decimal amounts.
//!
//! The crate's README walks through writing, registering, building, configuring and running it.

pub mod amount;
pub mod big_orders;
