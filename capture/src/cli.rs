//! The `ordo` command line, as a library entry point so that a custom build of the daemon (one
//! that registers its own KCOPs) gets every subcommand of `ordo` by calling [`main_with`].
//!
//! ```no_run
//! use ordo_capture::routes::KcopRegistry;
//!
//! fn main() -> std::process::ExitCode {
//!     let registry = KcopRegistry::default(); // register your KCOPs here
//!     ordo_capture::cli::main_with(registry)
//! }
//! ```
//!
//! Exit codes: 0 ok; 2 configuration or prerequisite error; 1 runtime failure.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::daemon;
use crate::routes::KcopRegistry;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use ordo_config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The `tracing` target of the command's own log lines: `ordo`, as when they lived in the
/// binary, so log filters such as `info,ordo=debug` keep working in every build.
const LOG_TARGET: &str = "ordo";

const EXIT_CODES: &str = "Exit codes:\n  0  ok\n  1  runtime failure (a server or Kafka failed while running)\n  2  configuration or prerequisite error (nothing was started; fix and retry)";

#[derive(Parser)]
#[command(
    name = "ordo",
    version,
    about = "Change data capture from PostgreSQL and MariaDB to Kafka, in exact transaction order",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture changes and publish them, until SIGTERM or SIGINT (SIGHUP reloads the log level).
    ///
    /// Example: ordo run --config /etc/ordo/ordo.yaml
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check the config file, then the source's and Kafka's prerequisites; print every problem
    /// with its fix (exit 2 if there is any).
    ///
    /// Example: ordo check --config ordo.yaml
    Check {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only validate the file; connect to nothing.
        #[arg(long)]
        offline: bool,
    },
    /// Show the last commit record, the source's position and the lag.
    ///
    /// Example: ordo status --config ordo.yaml --format json
    Status {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
    },
    /// Print a shell completion script.
    ///
    /// Example: ordo completions bash > /etc/bash_completion.d/ordo
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Snapshot one table again while `ordo run` keeps streaming (incremental, chunked by
    /// primary key); follows the daemon's progress until the snapshot is done.
    ///
    /// Examples: ordo snapshot --config ordo.yaml --table public.orders --chunk-size 5000
    /// (PostgreSQL, schema.table); ordo snapshot --config ordo.yaml --table shop.orders
    /// (MariaDB, database.table). The source needs a `signal_table`.
    Snapshot(crate::resnapshot::command::SnapshotArgs),
    /// Print transactions from the commit stream, in source order, as they arrive.
    ///
    /// Example: ordo tail --config ordo.yaml --format jsonl --from beginning
    Tail(crate::tail::TailArgs),
    /// Config file helpers.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
}

/// `ordo status` output.
#[derive(Clone, Copy, ValueEnum)]
enum StatusFormat {
    /// Aligned lines for people.
    Text,
    /// One JSON object.
    Json,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema of the config file (for editors).
    ///
    /// Example: ordo config schema > ordo.schema.json
    Schema,
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    ordo_config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
}

/// Changes the log filter at run time (SIGHUP).
type LogReload = reload::Handle<EnvFilter, Registry>;

fn init_logging(config: Option<&Config>) -> LogReload {
    // Without a config (`tail`), only errors, and not librdkafka's end-of-partition notices.
    let level = config.map_or("error,rdkafka::client=off", |c| c.logging.level.as_str());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let json = match config.map(|c| c.logging.format) {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
    handle
}

/// SIGHUP: read the config file again and apply its log level; nothing else can change
/// without a restart.
fn reload_logging(path: &Path, handle: &LogReload) {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing::warn!(target: LOG_TARGET, "SIGHUP: RUST_LOG is set and overrides logging.level; nothing reloaded");
        return;
    }
    match ordo_config::load(path) {
        Ok(cfg) => match handle.reload(EnvFilter::new(&cfg.logging.level)) {
            Ok(()) => {
                tracing::info!(target: LOG_TARGET, level = %cfg.logging.level, "SIGHUP: reloaded the log level; source, kafka and mappings cannot be reloaded without a restart")
            }
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, error = %e, "SIGHUP: could not change the log level")
            }
        },
        Err(errors) => {
            tracing::error!(target: LOG_TARGET, config = %path.display(), problems = %errors, "SIGHUP: the config file is invalid; keeping the current log level")
        }
    }
}

/// Parses the command line and runs the subcommand, with the user KCOPs of `registry` available
/// to `ordo run` (outputs with `format: custom` and `kcop: <name>`).
///
/// Returns the process exit code: 0 ok, 2 configuration or prerequisite error (nothing was
/// started), 1 runtime failure. Installs the tracing subscriber and, for `run`, the SIGTERM,
/// SIGINT (drain and stop) and SIGHUP (reload the log level) handlers; call it once, from
/// `main`.
pub fn main_with(registry: KcopRegistry) -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            what: ConfigCommand::Schema,
        } => {
            println!("{}", ordo_config::json_schema());
            ExitCode::SUCCESS
        }
        Command::Check { config, offline } => match load(&config) {
            Ok(cfg) => check(&config, Arc::new(cfg), offline),
            Err(code) => code,
        },
        Command::Status { config, format } => match load(&config) {
            Ok(cfg) => status(&cfg, format),
            Err(code) => code,
        },
        Command::Completions { shell } => {
            use std::io::Write as _;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), bin_name(), &mut script);
            match std::io::stdout().write_all(&script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ordo: cannot write the completion script: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Snapshot(args) => {
            let cfg = match load(&args.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(Some(&cfg));
            snapshot(&cfg, &args)
        }
        Command::Tail(args) => {
            init_logging(None);
            crate::tail::main(args)
        }
        Command::Run { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let logs = init_logging(Some(&cfg));
            run(Arc::new(cfg), config, registry, logs)
        }
    }
}

/// The name this program was started as (`ordo`, or a custom build's name such as
/// `ordo-custom`), for completion scripts; `ordo` when it cannot be told.
fn bin_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            let name = Path::new(&arg0).file_name()?.to_str()?.to_owned();
            (!name.is_empty()).then_some(name)
        })
        .unwrap_or_else(|| "ordo".to_owned())
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("ordo: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

fn check(path: &Path, cfg: Arc<Config>, offline: bool) -> ExitCode {
    println!(
        "{}: config ok ({} mappings, commit topic {})",
        path.display(),
        cfg.mappings.len(),
        cfg.kafka.commit_topic
    );
    if offline {
        return ExitCode::SUCCESS;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let problems = rt.block_on(crate::check::check(&cfg));
    if problems.is_empty() {
        println!("source and kafka: ready");
        return ExitCode::SUCCESS;
    }
    crate::check::print(&problems);
    println!("{} problem(s); ordo run would fail", problems.len());
    ExitCode::from(2)
}

fn status(cfg: &Config, format: StatusFormat) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(crate::status::read(cfg)) {
        Ok(s) => {
            match format {
                StatusFormat::Text => print!("{}", s.to_text()),
                StatusFormat::Json => println!("{}", s.to_json()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ordo status: {e}");
            ExitCode::from(1)
        }
    }
}

fn snapshot(cfg: &Config, args: &crate::resnapshot::command::SnapshotArgs) -> ExitCode {
    use crate::resnapshot::command::{self, Display};
    use crate::resnapshot::signal::SnapshotError;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let exit = |e: &SnapshotError| {
        eprintln!("ordo snapshot: {e}");
        ExitCode::from(if matches!(e, SnapshotError::Refused(_)) {
            2
        } else {
            1
        })
    };
    rt.block_on(async {
        let req = match command::request(cfg, &args.table, args.chunk_size).await {
            Ok(r) => r,
            Err(e) => return exit(&e),
        };
        if req.created_signal_table {
            eprintln!("created the signal table (the source's signal_table); ordo run watches it");
        }
        eprintln!(
            "requested a snapshot of {} (request {}, about {} rows)",
            req.table, req.id, req.estimated
        );
        if args.no_wait {
            return ExitCode::SUCCESS;
        }
        let mut display = Display::new(&req);
        let result = command::follow(cfg, &req, |r, waited| display.update(r, waited)).await;
        display.finish();
        match result {
            Ok(r) => {
                let rows = r.number("rows_done").unwrap_or(0);
                eprintln!("snapshot of {} done: {rows} rows", req.table);
                ExitCode::SUCCESS
            }
            Err(e) => exit(&e),
        }
    })
}

fn run(config: Arc<Config>, path: PathBuf, registry: KcopRegistry, logs: LogReload) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        // Owned by the runtime; ends when the runtime shuts down after `daemon::run` returns.
        tokio::spawn(signals(shutdown.clone(), path, logs));
        match daemon::run(config, registry, shutdown).await {
            Ok(()) => {
                tracing::info!(target: LOG_TARGET, "stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(target: LOG_TARGET, error = %e, "ordo stopped on an error");
                eprintln!("ordo: {e}");
                ExitCode::from(e.exit_code())
            }
        }
    })
}

async fn signals(shutdown: CancellationToken, path: PathBuf, logs: LogReload) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!(target: LOG_TARGET, "cannot install signal handlers; stop ordo with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => tracing::info!(target: LOG_TARGET, "SIGTERM: draining"),
            _ = int.recv() => tracing::info!(target: LOG_TARGET, "SIGINT: draining"),
            _ = hup.recv() => {
                reload_logging(&path, &logs);
                continue;
            }
        }
        shutdown.cancel();
        return;
    }
}
