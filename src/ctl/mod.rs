//! `mobile-admin ctl`: the admin command line, a client of the REST API (reqwest over rustls).
//! `login` keeps the server, its certificate and a session token in the user's configuration
//! directory (mode 0600); every other command calls the API with them. Tables for people,
//! `--json` for scripts; a refusal prints the server's message and exits non-zero.

mod client;
mod table;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

pub use client::{Client, Saved};
use table::{print_list, print_object};

/// Options of every `ctl` command.
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The admin API [default: the server of the last login, else https://127.0.0.1:13299].
    #[arg(long, global = true, env = "MOBILE_ADMIN_SERVER")]
    pub server: Option<String>,
    /// PEM certificate(s) to trust for the server [default: the last login's, else
    /// ./data/tls/device-cert.pem, the server's generated certificate].
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// An API token to use instead of the saved login.
    #[arg(
        long,
        global = true,
        env = "MOBILE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print the server's JSON answers instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Log in with a password; the session token is kept for the next commands.
    Login {
        /// The account.
        #[arg(long, default_value = "admin")]
        name: String,
        /// Read the password from the first line of standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log out: the session token is revoked and forgotten.
    Logout,
    /// Devices.
    #[command(subcommand)]
    Devices(Devices),
    /// Groups of devices.
    #[command(subcommand)]
    Groups(Groups),
    /// Policy rows of groups, and the effective policy.
    #[command(subcommand)]
    Policy(Policy),
    /// Event subscriptions of groups.
    #[command(subcommand)]
    Subscriptions(Subscriptions),
    /// Device events.
    #[command(subcommand)]
    Events(Events),
    /// API tokens.
    #[command(subcommand)]
    Tokens(Tokens),
    /// Update files served to devices.
    #[command(subcommand)]
    Updates(Updates),
    /// Product backend commands, routed to service consoles.
    #[command(subcommand)]
    Backend(Backend),
    /// The audit trail, newest first.
    Audit {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        object: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        page: Page,
    },
}

#[derive(Args, Debug, Clone, Copy)]
pub struct Page {
    #[arg(long, default_value_t = 100)]
    limit: u64,
    #[arg(long, default_value_t = 0)]
    offset: u64,
}

impl Page {
    fn query(self) -> Vec<(String, String)> {
        vec![
            ("limit".into(), self.limit.to_string()),
            ("offset".into(), self.offset.to_string()),
        ]
    }
}

#[derive(Subcommand, Debug)]
pub enum Devices {
    /// List devices (filters repeat: --group 3 --group 6).
    List {
        #[arg(long = "group")]
        groups: Vec<i64>,
        /// active, blocked or never_seen.
        #[arg(long = "status")]
        statuses: Vec<String>,
        #[arg(long)]
        search: Option<String>,
        /// 1: infected only; 0: clean only.
        #[arg(long)]
        infected: Option<u8>,
        #[command(flatten)]
        page: Page,
    },
    /// Show one device.
    Show {
        device_id: String,
    },
    /// Move a device to a group.
    Move {
        device_id: String,
        group: i64,
    },
    /// Rename a device ("" removes the name).
    Rename {
        device_id: String,
        name: String,
    },
    /// Block a device: it cannot connect, its sessions end.
    Block {
        device_id: String,
    },
    Unblock {
        device_id: String,
    },
    /// Forget a device's password: it enrols again at its next login.
    Reset {
        device_id: String,
    },
    /// Delete a device and everything it reported.
    Delete {
        device_id: String,
    },
    /// Pre-register a device id (for closed enrolment).
    Preregister {
        device_id: String,
        #[arg(long)]
        group: Option<i64>,
        #[arg(long)]
        name: Option<String>,
        /// Read the password the device must log in with from standard input (else its first
        /// login sets it).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum Groups {
    List {
        #[command(flatten)]
        page: Page,
    },
    Create {
        parent: i64,
        name: String,
    },
    Move {
        group: i64,
        parent: i64,
    },
    Rename {
        group: i64,
        name: String,
    },
    /// Delete an empty group.
    Delete {
        group: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum Policy {
    /// The rows of a group.
    List { group: i64 },
    /// Set a value at a path (a new row, or the row already at that path), locked unless
    /// --unlocked.
    Set {
        group: i64,
        path: String,
        value: String,
        /// bool (0/1), int, long, float, double, string, date, datetime, binary (base64), or json
        /// (VALUE is then the API's typed encoding, such as an array).
        #[arg(long = "type", default_value = "string")]
        kind: String,
        #[arg(long)]
        unlocked: bool,
    },
    /// Remove the row at a path.
    Unset { group: i64, path: String },
    /// Lock the row at a path: devices get it.
    Lock { group: i64, path: String },
    /// Unlock the row at a path: it is kept, devices no longer get it.
    Unlock { group: i64, path: String },
    /// The effective policy of a group (or of a device's group), with where each value comes from.
    Effective {
        group: Option<i64>,
        #[arg(long, conflicts_with = "group")]
        device: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum Subscriptions {
    List {
        group: i64,
    },
    Add {
        group: i64,
        severity: i32,
        event_type: String,
    },
    Remove {
        group: i64,
        severity: i32,
        event_type: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum Events {
    /// List events, newest first; --follow prints new ones as they arrive, oldest first.
    List {
        #[arg(long = "device")]
        devices: Vec<String>,
        #[arg(long = "group")]
        groups: Vec<i64>,
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(long = "severity")]
        severities: Vec<i32>,
        /// RFC 3339.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        text: Option<String>,
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        page: Page,
    },
}

#[derive(Subcommand, Debug)]
pub enum Tokens {
    /// Create an API token; it is printed once.
    Create {
        name: String,
        #[arg(long)]
        days: Option<u64>,
    },
    List {
        /// Another account's tokens.
        #[arg(long)]
        account: Option<String>,
    },
    Revoke {
        id: i64,
    },
    /// Delete an expired token.
    Delete {
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum Backend {
    /// Send a command to the service console of a product and version; prints its CMD_ID, or with
    /// --wait the command once it has ended.
    Send {
        /// CMD_NAME.
        name: String,
        /// CMD_PROD_NAME.
        #[arg(long)]
        product: String,
        /// CMD_PROD_VERSION.
        #[arg(long)]
        version: String,
        /// CMD_PARAMS in the typed encoding, e.g. '{"n": {"type": "int", "value": 5}}'.
        #[arg(long)]
        params: Option<String>,
        /// Seconds to wait for the command to end (at most 60).
        #[arg(long)]
        wait: Option<u64>,
    },
    /// A command, with its result or error container.
    Show {
        id: String,
        /// Seconds to wait for the command to end (at most 60).
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Commands, newest first.
    List {
        /// pending, delivered, done, failed (repeat for several).
        #[arg(long = "state")]
        states: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        product: Option<String>,
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// The live service consoles.
    Consoles {
        #[arg(long, requires = "version")]
        product: Option<String>,
        #[arg(long, requires = "product")]
        version: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum Updates {
    /// Upload a file (streamed), replacing any file of that name.
    Upload {
        file: PathBuf,
        /// Its name under the updates directory [default: the file's name].
        #[arg(long)]
        name: Option<String>,
    },
    List,
    Delete {
        name: String,
    },
}

/// Path segment: percent-encodes what cannot stand in one (so `/` in an update file name too).
fn segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn typed(kind: &str, text: &str) -> anyhow::Result<Value> {
    Ok(match kind {
        "json" => serde_json::from_str(text)?,
        "bool" => match text {
            "1" | "true" => json!({"type": "bool", "value": 1}),
            "0" | "false" => json!({"type": "bool", "value": 0}),
            _ => anyhow::bail!("a bool is 0 or 1"),
        },
        "int" | "long" => json!({"type": kind, "value": text.parse::<i64>()?}),
        "float" | "double" => json!({"type": kind, "value": text.parse::<f64>()?}),
        "string" | "date" | "datetime" | "binary" => json!({"type": kind, "value": text}),
        other => anyhow::bail!("unknown type {other:?}"),
    })
}

/// Columns the tables show.
const DEVICE: &[&str] = &[
    "device_id",
    "display_name",
    "group_id",
    "status",
    "infected",
    "last_seen",
];
const EVENT: &[&str] = &[
    "id",
    "received_at",
    "device_id",
    "severity",
    "event_type",
    "descr",
];

/// What a command prints: an object, or a list with the columns of its table.
struct Output {
    json: bool,
}

impl Output {
    fn object(&self, value: &Value) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            print_object(value);
        }
    }

    fn list(&self, value: &Value, columns: &[&str]) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            print_list(value, columns);
        }
    }
}

/// Runs one `ctl` command.
pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let out = Output { json: args.json };
    if let CtlCommand::Login {
        name,
        password_stdin,
    } = &args.command
    {
        let password = read_password(*password_stdin, false)?;
        let saved = Client::login(
            args.server.as_deref(),
            args.cacert.as_deref(),
            name,
            &password,
        )
        .await?;
        eprintln!("logged in to {} as {name}", saved.server);
        return Ok(());
    }
    let client = Client::open(
        args.server.as_deref(),
        args.cacert.as_deref(),
        args.token.as_deref(),
    )?;
    match args.command {
        CtlCommand::Login { .. } => unreachable!("handled above"),
        CtlCommand::Logout => {
            client.post("/logout", json!({})).await?;
            Saved::forget()?;
            eprintln!("logged out");
        }
        CtlCommand::Devices(command) => devices(&client, &out, command).await?,
        CtlCommand::Groups(command) => groups(&client, &out, command).await?,
        CtlCommand::Policy(command) => policy(&client, &out, command).await?,
        CtlCommand::Subscriptions(command) => subscriptions(&client, &out, command).await?,
        CtlCommand::Events(Events::List {
            devices,
            groups,
            types,
            severities,
            from,
            to,
            text,
            follow,
            page,
        }) => {
            let mut query = Vec::new();
            query.extend(devices.into_iter().map(|d| ("device_id".to_string(), d)));
            query.extend(
                groups
                    .iter()
                    .map(|g| ("group_id".to_string(), g.to_string())),
            );
            query.extend(types.into_iter().map(|t| ("event_type".to_string(), t)));
            query.extend(
                severities
                    .iter()
                    .map(|s| ("severity".to_string(), s.to_string())),
            );
            query.extend(from.map(|f| ("from".to_string(), f)));
            query.extend(to.map(|t| ("to".to_string(), t)));
            query.extend(text.map(|t| ("text".to_string(), t)));
            if follow {
                follow_events(&client, &out, query).await?;
            } else {
                query.extend(page.query());
                out.list(&client.get_query("/events", &query).await?, EVENT);
            }
        }
        CtlCommand::Tokens(command) => tokens(&client, &out, command).await?,
        CtlCommand::Updates(command) => updates(&client, &out, command).await?,
        CtlCommand::Backend(command) => backend(&client, &out, command).await?,
        CtlCommand::Audit {
            kind,
            object,
            account,
            page,
        } => {
            let mut query = page.query();
            query.extend(kind.map(|k| ("object_kind".to_string(), k)));
            query.extend(object.map(|o| ("object_id".to_string(), o)));
            query.extend(account.map(|a| ("account".to_string(), a)));
            out.list(
                &client.get_query("/audit", &query).await?,
                &["id", "at", "account", "action", "object_kind", "object_id"],
            );
        }
    }
    Ok(())
}

async fn devices(client: &Client, out: &Output, command: Devices) -> anyhow::Result<()> {
    let path = |id: &str| format!("/devices/{}", segment(id));
    let value = match command {
        Devices::List {
            groups,
            statuses,
            search,
            infected,
            page,
        } => {
            let mut query = page.query();
            query.extend(
                groups
                    .iter()
                    .map(|g| ("group_id".to_string(), g.to_string())),
            );
            query.extend(statuses.into_iter().map(|s| ("status".to_string(), s)));
            query.extend(search.map(|s| ("search".to_string(), s)));
            query.extend(infected.map(|i| ("infected".to_string(), i.to_string())));
            out.list(&client.get_query("/devices", &query).await?, DEVICE);
            return Ok(());
        }
        Devices::Show { device_id } => client.get(&path(&device_id)).await?,
        Devices::Move { device_id, group } => {
            client
                .put(&path(&device_id), json!({"group_id": group}))
                .await?
        }
        Devices::Rename { device_id, name } => {
            client
                .put(&path(&device_id), json!({"display_name": name}))
                .await?
        }
        Devices::Block { device_id } => {
            client.put(&path(&device_id), json!({"blocked": 1})).await?
        }
        Devices::Unblock { device_id } => {
            client.put(&path(&device_id), json!({"blocked": 0})).await?
        }
        Devices::Reset { device_id } => {
            client
                .post(&format!("{}/reset", path(&device_id)), json!({}))
                .await?
        }
        Devices::Delete { device_id } => client.delete(&path(&device_id)).await?,
        Devices::Preregister {
            device_id,
            group,
            name,
            password_stdin,
        } => {
            let password = password_stdin
                .then(|| read_password(true, false))
                .transpose()?;
            client
                .post(
                    "/devices",
                    json!({"device_id": device_id, "group_id": group, "display_name": name,
                           "password": password}),
                )
                .await?
        }
    };
    out.object(&value);
    Ok(())
}

async fn backend(client: &Client, out: &Output, command: Backend) -> anyhow::Result<()> {
    let show = |id: &str, wait: Option<u64>| {
        let query: Vec<(String, String)> = wait
            .map(|w| ("wait".into(), w.to_string()))
            .into_iter()
            .collect();
        let path = format!("/backend-commands/{}", segment(id));
        async move { client.get_query(&path, &query).await }
    };
    let value = match command {
        Backend::Send {
            name,
            product,
            version,
            params,
            wait,
        } => {
            let params: Value = match params {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("--params is not JSON: {e}"))?,
                None => json!({}),
            };
            let sent = client
                .post(
                    "/backend-commands",
                    json!({"CMD_NAME": name, "CMD_PROD_NAME": product,
                           "CMD_PROD_VERSION": version, "CMD_PARAMS": params}),
                )
                .await?;
            match (wait, sent["CMD_ID"].as_str()) {
                (Some(wait), Some(id)) => show(id, Some(wait)).await?,
                _ => sent,
            }
        }
        Backend::Show { id, wait } => show(&id, wait).await?,
        Backend::List {
            states,
            name,
            product,
            version,
            page,
        } => {
            let mut query = page.query();
            query.extend(states.into_iter().map(|s| ("state".to_string(), s)));
            query.extend(name.map(|n| ("CMD_NAME".to_string(), n)));
            query.extend(product.map(|p| ("CMD_PROD_NAME".to_string(), p)));
            query.extend(version.map(|v| ("CMD_PROD_VERSION".to_string(), v)));
            out.list(
                &client.get_query("/backend-commands", &query).await?,
                &[
                    "CMD_ID",
                    "created_at",
                    "CMD_NAME",
                    "CMD_PROD_NAME",
                    "CMD_PROD_VERSION",
                    "state",
                    "initiator",
                ],
            );
            return Ok(());
        }
        Backend::Consoles { product, version } => {
            let mut query = Vec::new();
            query.extend(product.map(|p| ("CMD_PROD_NAME".to_string(), p)));
            query.extend(version.map(|v| ("CMD_PROD_VERSION".to_string(), v)));
            out.list(
                &client.get_query("/backend-consoles", &query).await?,
                &[
                    "id",
                    "account",
                    "channel",
                    "CMD_PROD_NAME",
                    "CMD_PROD_VERSION",
                    "assigned",
                    "expires_at",
                ],
            );
            return Ok(());
        }
    };
    out.object(&value);
    Ok(())
}

async fn groups(client: &Client, out: &Output, command: Groups) -> anyhow::Result<()> {
    let value = match command {
        Groups::List { page } => {
            let listed = client.get_query("/groups", &page.query()).await?;
            out.list(&listed, &["id", "parent_id", "name"]);
            return Ok(());
        }
        Groups::Create { parent, name } => {
            client
                .post("/groups", json!({"parent_id": parent, "name": name}))
                .await?
        }
        Groups::Move { group, parent } => {
            client
                .put(&format!("/groups/{group}"), json!({"parent_id": parent}))
                .await?
        }
        Groups::Rename { group, name } => {
            client
                .put(&format!("/groups/{group}"), json!({"name": name}))
                .await?
        }
        Groups::Delete { group } => client.delete(&format!("/groups/{group}")).await?,
    };
    out.object(&value);
    Ok(())
}

/// The row of `group` at `path`, if any.
async fn policy_row(client: &Client, group: i64, path: &str) -> anyhow::Result<Option<Value>> {
    let rows = client
        .get_query(
            &format!("/groups/{group}/policy"),
            &[("limit".to_string(), "1000".to_string())],
        )
        .await?;
    Ok(rows["list"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["path"] == path).cloned()))
}

async fn policy(client: &Client, out: &Output, command: Policy) -> anyhow::Result<()> {
    const ROW: &[&str] = &["id", "path", "value", "locked"];
    let value = match command {
        Policy::List { group } => {
            out.list(&client.get(&format!("/groups/{group}/policy")).await?, ROW);
            return Ok(());
        }
        Policy::Effective { group, device } => {
            let path = match (group, device) {
                (_, Some(device)) => format!("/devices/{}/effective-policy", segment(&device)),
                (Some(group), None) => format!("/groups/{group}/effective-policy"),
                (None, None) => anyhow::bail!("name a group, or a device with --device"),
            };
            out.list(
                &client.get(&path).await?,
                &["path", "value", "locked", "group_id", "applied"],
            );
            return Ok(());
        }
        Policy::Set {
            group,
            path,
            value,
            kind,
            unlocked,
        } => {
            let body = json!({"path": path, "value": typed(&kind, &value)?, "locked": u8::from(!unlocked)});
            match policy_row(client, group, &path).await? {
                Some(row) => {
                    client
                        .put(&format!("/groups/{group}/policy/{}", row["id"]), body)
                        .await?
                }
                None => {
                    client
                        .post(&format!("/groups/{group}/policy"), body)
                        .await?
                }
            }
        }
        Policy::Unset { group, path } => {
            let row = policy_row(client, group, &path)
                .await?
                .ok_or_else(|| anyhow::anyhow!("group {group} has no row at {path:?}"))?;
            client
                .delete(&format!("/groups/{group}/policy/{}", row["id"]))
                .await?
        }
        Policy::Lock { group, path } => set_lock(client, group, &path, true).await?,
        Policy::Unlock { group, path } => set_lock(client, group, &path, false).await?,
    };
    out.object(&value);
    Ok(())
}

/// Locks or unlocks the row of `group` at `path`, keeping its value.
async fn set_lock(client: &Client, group: i64, path: &str, locked: bool) -> anyhow::Result<Value> {
    let row = policy_row(client, group, path)
        .await?
        .ok_or_else(|| anyhow::anyhow!("group {group} has no row at {path:?}"))?;
    let body = json!({"path": path, "value": row["value"], "locked": u8::from(locked)});
    client
        .put(&format!("/groups/{group}/policy/{}", row["id"]), body)
        .await
}

async fn subscriptions(
    client: &Client,
    out: &Output,
    command: Subscriptions,
) -> anyhow::Result<()> {
    let value = match command {
        Subscriptions::List { group } => {
            out.list(
                &client
                    .get(&format!("/groups/{group}/subscriptions"))
                    .await?,
                &["group_id", "severity", "event_type"],
            );
            return Ok(());
        }
        Subscriptions::Add {
            group,
            severity,
            event_type,
        } => {
            client
                .post(
                    &format!("/groups/{group}/subscriptions"),
                    json!({"severity": severity, "event_type": event_type}),
                )
                .await?
        }
        Subscriptions::Remove {
            group,
            severity,
            event_type,
        } => {
            client
                .delete(&format!(
                    "/groups/{group}/subscriptions/{severity}/{}",
                    segment(&event_type)
                ))
                .await?
        }
    };
    out.object(&value);
    Ok(())
}

/// Prints new events as they arrive, oldest first, until interrupted.
async fn follow_events(
    client: &Client,
    out: &Output,
    filter: Vec<(String, String)>,
) -> anyhow::Result<()> {
    // Start at the newest event there is.
    let mut newest = filter.clone();
    newest.push(("limit".into(), "1".into()));
    let mut after = client.get_query("/events", &newest).await?["list"][0]["id"]
        .as_i64()
        .unwrap_or(0);
    loop {
        let mut query = filter.clone();
        query.push(("after_id".into(), after.to_string()));
        query.push(("limit".into(), "1000".into()));
        let page = client.get_query("/events", &query).await?;
        let events = page["list"].as_array().cloned().unwrap_or_default();
        for event in &events {
            if out.json {
                println!("{event}");
            } else {
                table::print_row(event, EVENT);
            }
            after = after.max(event["id"].as_i64().unwrap_or(after));
        }
        if events.len() < 1000 {
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}

async fn tokens(client: &Client, out: &Output, command: Tokens) -> anyhow::Result<()> {
    let value = match command {
        Tokens::Create { name, days } => {
            let made = client
                .post("/tokens", json!({"name": name, "days": days}))
                .await?;
            if !out.json {
                eprintln!("the token is shown this once: keep it");
            }
            made
        }
        Tokens::List { account } => {
            let query: Vec<(String, String)> = account
                .map(|a| ("account".to_string(), a))
                .into_iter()
                .collect();
            out.list(
                &client.get_query("/tokens", &query).await?,
                &["id", "name", "kind", "state", "expires_at", "subject"],
            );
            return Ok(());
        }
        Tokens::Revoke { id } => {
            client
                .put(&format!("/tokens/{id}"), json!({"revoked": 1}))
                .await?
        }
        Tokens::Delete { id } => client.delete(&format!("/tokens/{id}")).await?,
    };
    out.object(&value);
    Ok(())
}

async fn updates(client: &Client, out: &Output, command: Updates) -> anyhow::Result<()> {
    let value = match command {
        Updates::Upload { file, name } => {
            let name = match name {
                Some(name) => name,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| anyhow::anyhow!("name the file with --name"))?
                    .to_string(),
            };
            client
                .upload(&format!("/update-files/{}", segment(&name)), &file)
                .await?
        }
        Updates::List => {
            out.list(
                &client.get("/update-files").await?,
                &["name", "is_dir", "size", "sha256", "modified"],
            );
            return Ok(());
        }
        Updates::Delete { name } => {
            client
                .delete(&format!("/update-files/{}", segment(&name)))
                .await?
        }
    };
    out.object(&value);
    Ok(())
}

/// Reads a password from the first line of standard input, or from a prompt (twice when
/// `confirm`).
pub fn read_password(from_stdin: bool, confirm: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("Password: ")?;
    if confirm {
        let again = rpassword::prompt_password("Password again: ")?;
        anyhow::ensure!(first == again, "the two passwords differ");
    }
    Ok(first)
}

/// How often `events list --follow` asks for new events.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);
