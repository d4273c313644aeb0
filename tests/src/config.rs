//! Building the daemon's YAML in tests: the `source:` and `kafka:` blocks that most suites
//! write the same way, pointed at the running stack. Each returns whole lines (ending in a
//! newline) to concatenate with the suite's own `mappings:` and other settings.

use std::path::Path;

use crate::stack::stack;

/// The `source:` block for the stack's PostgreSQL: user `ordo`, no TLS, database `db`, slot
/// and publication both named `slot_and_publication`, the given `snapshot` mode (`never`,
/// `initial`, ...) and `status_interval_ms: 200`, so that positions are confirmed quickly.
pub fn pg_source_yaml(db: &str, slot_and_publication: &str, snapshot: &str) -> String {
    pg_source(db, slot_and_publication, snapshot, None)
}

/// [`pg_source_yaml`] with `spill_dir: spill` (large transactions spill to disk there).
pub fn pg_source_yaml_spilling(
    db: &str,
    slot_and_publication: &str,
    snapshot: &str,
    spill: &Path,
) -> String {
    pg_source(db, slot_and_publication, snapshot, Some(spill))
}

fn pg_source(db: &str, name: &str, snapshot: &str, spill: Option<&Path>) -> String {
    let s = stack();
    let spill = spill.map_or(String::new(), |p| {
        format!("    spill_dir: {}\n", p.display())
    });
    format!(
        "source:
  postgres:
    host: {host}
    port: {port}
    user: ordo
    password: ordo
    database: {db}
    tls: {{ mode: disable }}
    slot: {name}
    publication: {name}
    snapshot: {snapshot}
{spill}    status_interval_ms: 200
",
        host = s.pg_host,
        port = s.pg_port,
    )
}

/// The `source:` block for the stack's MariaDB: flavor `mariadb`, user `ordo`, no TLS,
/// replication client id `server_id`, the given `snapshot` mode and the one database `db`.
pub fn mysql_source_yaml(db: &str, server_id: u32, snapshot: &str) -> String {
    let s = stack();
    format!(
        "source:
  mysql:
    flavor: mariadb
    host: {host}
    port: {port}
    user: ordo
    password: ordo
    tls: {{ mode: disable }}
    server_id: {server_id}
    snapshot: {snapshot}
    databases: [{db}]
",
        host = s.mysql_host,
        port = s.mysql_port,
    )
}

/// The `kafka:` block for the stack's broker with commit topic `commit_topic` and, when
/// given, `topic_partitions: partitions` (else the daemon's default).
pub fn kafka_yaml(commit_topic: &str, partitions: Option<u32>) -> String {
    let partitions = partitions.map_or(String::new(), |n| format!("  topic_partitions: {n}\n"));
    format!(
        "kafka:
  bootstrap_servers: \"{kafka}\"
  commit_topic: {commit_topic}
{partitions}",
        kafka = stack().kafka,
    )
}
