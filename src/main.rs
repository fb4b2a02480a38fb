//! The `mobile-admin` command: parses arguments, loads configuration, starts tracing and runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use mobile_admin::config::Config;

#[derive(Parser)]
#[command(
    name = "mobile-admin",
    version,
    about = "Administration server for mobile security apps (aklwngt)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve devices (and admins) until SIGINT or SIGTERM.
    Serve(ServerArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(ServerArgs),
    /// Write the whole database to standard output as a dump (JSON lines), to move it elsewhere.
    Export(ServerArgs),
    /// Load a dump from standard input into a new, empty database.
    Import(ServerArgs),
}

/// Flags shared by the commands that use the server's configuration. Each one overrides the TOML file
/// and the `MOBILE_ADMIN_*` environment; only flags that were given are serialised as overrides.
#[derive(Args, Serialize)]
struct ServerArgs {
    /// TOML configuration file (see mobile-admin.example.toml).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Directory for the database, generated TLS material and updates [default: ./data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Address for device connections [default: 0.0.0.0:13292].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    device_listen: Option<SocketAddr>,
    /// sqlite://FILE or postgres://... [default: SQLite file in the data directory].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    /// PEM certificate chain for the device port (with --tls-key).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the device port (with --tls-cert).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
}

impl ServerArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref(), self)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if matches!(cli.command, Command::Export(_)) {
        // Standard output carries the dump: log beside it.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => mobile_admin::serve(args.load()?).await,
            Command::Migrate(args) => mobile_admin::migrate(args.load()?).await,
            Command::Export(args) => {
                let url = args.load()?.database_url();
                let rows = mobile_admin::transfer::export(
                    &url,
                    &mut std::io::BufWriter::new(std::io::stdout()),
                )
                .await?;
                tracing::info!(rows, "database exported");
                Ok(())
            }
            Command::Import(args) => {
                let url = args.load()?.database_url();
                let rows = mobile_admin::transfer::import(
                    &url,
                    &mut std::io::BufReader::new(std::io::stdin()),
                )
                .await?;
                tracing::info!(rows, "database imported");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
