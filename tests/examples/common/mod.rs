//! What the PostgreSQL benchmarks share: the release `ordo`, the standard 6-column table and
//! the daemon's config for it.

use std::path::{Path, PathBuf};

use ordo_tests::stack::stack;

/// The standard benchmark table (6 mixed-type columns).
pub(crate) const BENCH_TABLE: &str = "CREATE TABLE bench (id bigint PRIMARY KEY, n int, payload text, created_at timestamptz, amount numeric(12,2), flag bool)";

/// The release `ordo` (see [`ordo_tests::capture::release_ordo_binary`]).
pub(crate) fn release_ordo() -> PathBuf {
    ordo_tests::capture::release_ordo_binary()
}

/// The daemon's config: `public.bench` of `db` through the JSON KCOP to `<name>.bench` (4
/// partitions), commit records to `<name>.commits`, no snapshot, spilling under `dir`.
/// `ORDO_BENCH_KAFKA_PROPERTIES` (a YAML map, e.g. `{"linger.ms": "5"}`) adds librdkafka
/// properties to try.
pub(crate) fn pg_config(dir: &Path, db: &str, slot: &str, name: &str) -> String {
    let s = stack();
    let props = std::env::var("ORDO_BENCH_KAFKA_PROPERTIES")
        .map(|p| format!("  properties: {p}\n"))
        .unwrap_or_default();
    format!(
        "source:\n  postgres:\n    host: {}\n    port: {}\n    user: ordo\n    password: ordo\n    database: {db}\n    tls: {{ mode: disable }}\n    slot: {slot}\n    publication: {name}\n    create_publication: false\n    snapshot: never\n    spill_dir: {}\nkafka:\n  bootstrap_servers: \"{}\"\n  commit_topic: {name}.commits\n  topic_partitions: 4\n{props}mappings:\n  - tables: [\"public.bench\"]\n    outputs:\n      - topic: \"{name}.bench\"\n        format: json\n",
        s.pg_host,
        s.pg_port,
        dir.join("spill").display(),
        s.kafka
    )
}
