//! The `ordo` command.
//!
//! Exit codes: 0 ok; 2 configuration or prerequisite error; 1 runtime failure.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use ordo_capture::daemon;
use ordo_capture::routes::KcopRegistry;
use ordo_config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ordo",
    version,
    about = "Change data capture from PostgreSQL and MariaDB to Kafka, in exact transaction order"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture changes and publish them, until SIGTERM or SIGINT.
    ///
    /// Example: ordo run --config /etc/ordo/ordo.yaml
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check the config file; print every problem with its location and fix.
    ///
    /// Example: ordo check --config ordo.yaml
    Check {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print transactions from the commit stream, in source order, as they arrive.
    ///
    /// Example: ordo tail --config ordo.yaml --format jsonl --from beginning
    Tail(ordo_capture::tail::TailArgs),
    /// Config file helpers.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
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

fn init_logging(config: Option<&Config>) {
    // Without a config (`tail`), only errors, and not librdkafka's end-of-partition notices.
    let level = config.map_or("error,rdkafka::client=off", |c| c.logging.level.as_str());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let json = match config.map(|c| c.logging.format) {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            what: ConfigCommand::Schema,
        } => {
            println!("{}", ordo_config::json_schema());
            ExitCode::SUCCESS
        }
        Command::Check { config } => match load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} mappings, commit topic {})",
                    config.display(),
                    cfg.mappings.len(),
                    cfg.kafka.commit_topic
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Tail(args) => {
            init_logging(None);
            ordo_capture::tail::main(args)
        }
        Command::Run { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(Some(&cfg));
            run(Arc::new(cfg))
        }
    }
}

fn run(config: Arc<Config>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ordo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        match daemon::run(config, KcopRegistry::default(), shutdown).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "ordo stopped on an error");
                eprintln!("ordo: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop ordo with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    shutdown.cancel();
}
