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
    /// Run a fleet of virtual devices against a server (load generator), optionally against a
    /// do-nothing baseline too.
    Simulate(SimulateArgs),
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Args)]
struct SimulateArgs {
    /// The server's device port, HOST:PORT.
    #[arg(long)]
    server: Option<String>,
    /// Name the server certificate must carry (and SNI) [default: the host of --server].
    #[arg(long)]
    tls_name: Option<String>,
    /// PEM certificates to trust [default: ./data/tls/device-cert.pem, the server's generated one].
    #[arg(long, conflicts_with = "insecure")]
    cafile: Option<PathBuf>,
    /// Accept any server certificate.
    #[arg(long)]
    insecure: bool,
    /// Devices in the fleet.
    #[arg(long, default_value_t = 1000)]
    devices: u32,
    /// Fleet seed: device ids are sim-SEED-INDEX, passwords derive from both.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Session starts per second, or `max` (as fast as --concurrency allows).
    #[arg(long, conflicts_with = "period")]
    rate: Option<mobile_admin::sim::Rate>,
    /// Each device syncs once per this many seconds (rate = devices / period) [default: 900].
    #[arg(long)]
    period: Option<f64>,
    /// Seconds to generate load [default: 60; with --enrol-only, until every device is enrolled].
    #[arg(long)]
    duration: Option<f64>,
    /// Most sessions in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// New events per session, sent in PutEvents calls of up to 100.
    #[arg(long, default_value_t = 1)]
    events_per_session: u32,
    /// Share of sessions sending a burst of --burst-calls PutEvents calls of 10 events instead.
    #[arg(long, default_value_t = 0.01)]
    event_burst: f64,
    /// PutEvents calls in a burst.
    #[arg(long, default_value_t = 5)]
    burst_calls: u32,
    /// Share of sessions in which the device's settings and state change first.
    #[arg(long, default_value_t = 0.02)]
    changing_share: f64,
    /// Update file to download (klft-GetFileInfo + klft-GetNextFileChunk).
    #[arg(long)]
    download: Option<String>,
    /// Share of sessions that download --download.
    #[arg(long, default_value_t = 1.0)]
    download_share: f64,
    /// Bytes asked for per chunk.
    #[arg(long, default_value_t = 32768)]
    chunk_size: u64,
    /// TLS session resumption.
    #[arg(long, value_enum, default_value = "on")]
    tls_resumption: OnOff,
    /// All calls of a session on one connection (the default).
    #[arg(long, conflicts_with = "connection_per_call")]
    keep_alive: bool,
    /// A new connection for every call.
    #[arg(long)]
    connection_per_call: bool,
    /// Seconds per call, connecting included.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Where the fleet remembers its devices between runs.
    #[arg(long, default_value = "./sim-state")]
    state_dir: PathBuf,
    /// Print the report as one JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Run each not-yet-enrolled device's first session once, as fast as allowed.
    #[arg(long)]
    enrol_only: bool,
    /// Also run the scenario, first, against a do-nothing responder started in this process.
    #[arg(long, conflicts_with = "baseline_server")]
    baseline: bool,
    /// Run the scenario first against a do-nothing responder at HOST:PORT (see --serve-baseline).
    #[arg(long)]
    baseline_server: Option<String>,
    /// Only run a do-nothing responder on this address until interrupted (its certificate is kept
    /// in STATE_DIR/baseline).
    #[arg(long, conflicts_with_all = ["server", "baseline", "baseline_server"])]
    serve_baseline: Option<SocketAddr>,
}

impl SimulateArgs {
    fn options(&self) -> anyhow::Result<mobile_admin::sim::SimOptions> {
        use mobile_admin::sim::{BaselineMode, Rate, SimOptions, Trust};
        let secs = |name: &str, v: f64| {
            std::time::Duration::try_from_secs_f64(v)
                .map_err(|_| anyhow::anyhow!("--{name} must be a number of seconds"))
        };
        Ok(SimOptions {
            server: self.server.clone(),
            tls_name: self.tls_name.clone(),
            trust: match (&self.cafile, self.insecure) {
                (Some(path), _) => Some(Trust::CaFile(path.clone())),
                (None, true) => Some(Trust::Insecure),
                (None, false) => None,
            },
            devices: self.devices,
            seed: self.seed,
            rate: match (self.rate, self.period) {
                (Some(rate), _) => rate,
                (None, period) => Rate::Period(period.unwrap_or(900.0)),
            },
            duration: self.duration.map(|d| secs("duration", d)).transpose()?,
            concurrency: self.concurrency,
            events_per_session: self.events_per_session,
            event_burst: self.event_burst,
            burst_calls: self.burst_calls,
            changing_share: self.changing_share,
            download: self.download.clone(),
            download_share: self.download_share,
            chunk_size: self.chunk_size,
            tls_resumption: matches!(self.tls_resumption, OnOff::On),
            keep_alive: !self.connection_per_call,
            timeout: secs("timeout", self.timeout)?,
            state_dir: self.state_dir.clone(),
            enrol_only: self.enrol_only,
            baseline: match (&self.baseline_server, self.baseline) {
                (Some(addr), _) => BaselineMode::Server(addr.clone()),
                (None, true) => BaselineMode::InProcess,
                (None, false) => BaselineMode::None,
            },
            progress: !self.json,
            stop_on_signal: true,
        })
    }

    async fn run(self) -> anyhow::Result<()> {
        if let Some(listen) = self.serve_baseline {
            let dir = self.state_dir.join("baseline");
            return Ok(mobile_admin::sim::serve_baseline(listen, &dir).await?);
        }
        let report = mobile_admin::sim::run(self.options()?).await?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.render());
        }
        Ok(())
    }
}

impl ServerArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref(), self)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The simulator's output is its report: only problems are logged unless RUST_LOG says otherwise.
    let default_filter = match cli.command {
        Command::Simulate(_) => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
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
            Command::Simulate(args) => args.run().await,
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
