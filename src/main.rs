//! The `mobile-admin` command: parses arguments, loads configuration, starts tracing and runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use mobile_admin::config::Config;
use mobile_admin::domain::Role;

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
    /// Manage admin accounts, on the server's own machine (straight in its database).
    Admin {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Manage the server through its admin REST API (log in first: `ctl login`).
    Ctl(mobile_admin::ctl::CtlArgs),
    /// Run a fleet of virtual devices against a server (load generator), optionally against a
    /// do-nothing baseline too.
    #[cfg(feature = "simulator")]
    Simulate(SimulateArgs),
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create an account; its password is asked for (or read from standard input).
    Add {
        name: String,
        /// administrator, operator, auditor or integration.
        #[arg(long, default_value = "operator")]
        role: String,
        /// Read the password from the first line of standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set an account's password (asked for, or read from standard input).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: it can no longer log in, and its tokens stop working.
    Disable { name: String },
    /// Enable a disabled account.
    Enable { name: String },
    /// List the accounts.
    List,
}

/// Flags shared by the commands that use the server's configuration. Each one overrides the TOML file
/// and the `MOBILE_ADMIN_*` environment; only flags that were given are serialised as overrides.
#[derive(Args, Serialize)]
struct ServerArgs {
    /// TOML configuration file (see mobile-admin.example.toml).
    #[arg(long, global = true)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Directory for the database, generated TLS material and updates [default: ./data].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Address for device connections [default: 0.0.0.0:13292].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    device_listen: Option<SocketAddr>,
    /// Address for the admin REST API, over HTTPS [default: 127.0.0.1:13299].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    /// PEM certificate chain for the admin port (with --admin-tls-key) [default: the device port's].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_tls_cert: Option<PathBuf>,
    /// PEM private key for the admin port (with --admin-tls-cert).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_tls_key: Option<PathBuf>,
    /// sqlite://FILE or postgres://... [default: SQLite file in the data directory].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    /// PEM certificate chain for the device port (with --tls-key).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the device port (with --tls-cert).
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
}

impl ServerArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref(), self)?)
    }
}

#[cfg(feature = "simulator")]
#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    options: mobile_admin::sim::SimOptions,
    /// Print the report as one JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Only run a do-nothing responder on this address until interrupted (its certificate is kept
    /// in STATE_DIR/baseline).
    #[arg(long, conflicts_with_all = ["server", "baseline", "baseline_server"])]
    serve_baseline: Option<SocketAddr>,
    /// Instead of devices, run this many live API subscribers against the admin port at
    /// --live-admin for --duration (trusting --cafile; their subscriptions name devices of the
    /// fleet of --devices and --seed), then report what they received.
    #[arg(long, requires_all = ["live_admin", "live_password_file", "duration"], conflicts_with_all = ["server", "serve_baseline"])]
    live_subscribers: Option<u32>,
    #[arg(long)]
    live_admin: Option<SocketAddr>,
    /// The account the subscribers log in as.
    #[arg(long, default_value = "admin")]
    live_user: String,
    /// A file holding its password.
    #[arg(long)]
    live_password_file: Option<std::path::PathBuf>,
    /// Instead of devices, run this many service consoles over the live API at --live-admin, with
    /// --backend-initiators sending product backend commands one after another for --duration,
    /// then report commands per second and round-trip times.
    #[arg(long, requires_all = ["live_admin", "live_password_file", "duration"], conflicts_with_all = ["server", "serve_baseline", "live_subscribers"])]
    backend_consoles: Option<u32>,
    #[arg(long, default_value_t = 32)]
    backend_initiators: u32,
}

#[cfg(feature = "simulator")]
impl SimulateArgs {
    async fn run(self) -> anyhow::Result<()> {
        if let Some(listen) = self.serve_baseline {
            let dir = self.options.state_dir.join("baseline");
            return Ok(mobile_admin::sim::serve_baseline(listen, &dir).await?);
        }
        if let (Some(consoles), Some(admin), Some(password_file)) = (
            self.backend_consoles,
            self.live_admin,
            self.live_password_file.clone(),
        ) {
            let report =
                mobile_admin::sim::backend::run(mobile_admin::sim::backend::BackendOptions {
                    admin,
                    tls_name: self
                        .options
                        .tls_name
                        .clone()
                        .unwrap_or_else(|| "localhost".into()),
                    trust: self.options.trust()?,
                    user: self.live_user.clone(),
                    password_file,
                    consoles,
                    initiators: self.backend_initiators,
                    duration: self.options.duration.unwrap_or_default(),
                })
                .await?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(());
        }
        if let (Some(subscribers), Some(admin), Some(password_file)) = (
            self.live_subscribers,
            self.live_admin,
            self.live_password_file.clone(),
        ) {
            let report = mobile_admin::sim::live::run(mobile_admin::sim::live::LiveOptions {
                admin,
                tls_name: self
                    .options
                    .tls_name
                    .clone()
                    .unwrap_or_else(|| "localhost".into()),
                trust: self.options.trust()?,
                user: self.live_user.clone(),
                password_file,
                subscribers,
                duration: self.options.duration.unwrap_or_default(),
                devices: self.options.devices,
                seed: self.options.seed,
            })
            .await?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(());
        }
        let options = mobile_admin::sim::SimOptions {
            progress: !self.json,
            stop_on_signal: true,
            ..self.options
        };
        let report = mobile_admin::sim::run(options).await?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.render());
        }
        Ok(())
    }
}

/// A password from the first line of standard input, or asked for twice at the terminal.
async fn admin(config: Config, action: AdminAction) -> anyhow::Result<()> {
    let tools = mobile_admin::app::Tools::open(&config).await?;
    let caller = mobile_admin::domain::Caller::system("command line");
    let domain = &tools.domain;
    let result = async {
        match action {
            AdminAction::Add {
                name,
                role,
                password_stdin,
            } => {
                let role = Role::parse(&role).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown role {role:?}: administrator, operator, auditor or integration"
                    )
                })?;
                let password = mobile_admin::ctl::read_password(password_stdin, true)?;
                let account = domain
                    .create_account(&caller, &name, role, &password)
                    .await?;
                println!("account {} created ({})", account.name, account.role);
            }
            AdminAction::Passwd {
                name,
                password_stdin,
            } => {
                let password = mobile_admin::ctl::read_password(password_stdin, true)?;
                domain.set_password(&caller, &name, &password).await?;
                println!("password of {name} changed");
            }
            AdminAction::Disable { name } => {
                domain.set_account_disabled(&caller, &name, true).await?;
                println!("account {name} disabled");
            }
            AdminAction::Enable { name } => {
                domain.set_account_disabled(&caller, &name, false).await?;
                println!("account {name} enabled");
            }
            AdminAction::List => {
                for a in domain.accounts(&caller).await? {
                    println!(
                        "{}\t{}\t{}",
                        a.name,
                        a.role,
                        if a.disabled { "disabled" } else { "enabled" }
                    );
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    tools.close().await;
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Quiet by default where the output is the point: the simulator's report, the admin commands'
    // answers, a dump on standard output.
    let server = matches!(
        cli.command,
        Command::Serve(_) | Command::Migrate(_) | Command::Import(_)
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if server { "info" } else { "warn" })
    });
    if server {
        tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
            Command::Admin { server, action } => admin(server.load()?, action).await,
            Command::Ctl(args) => mobile_admin::ctl::run(args).await,
            #[cfg(feature = "simulator")]
            Command::Simulate(args) => args.run().await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
