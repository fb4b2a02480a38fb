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
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
