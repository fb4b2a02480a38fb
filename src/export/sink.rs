//! Export sinks: each follows the bus as a durable consumer of its own and hands device and intake
//! events on, in commit order; its cursor moves only once what it read is written, so a sink that
//! stops (or a server that crashes) goes on from where it was, skipping nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::bus::Batch;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cef;
use super::files::CefFiles;
use crate::domain::bus::BusEvent;
use crate::domain::Domain;

/// The `[export]` section: any number of sinks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    pub sinks: Vec<SinkConfig>,
}

/// One sink (`[[export.sinks]]`, `kind = "cef_files"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// CEF lines in files of an exchange folder (seed 002's ArcSight converter).
    CefFiles {
        /// Names the sink's cursor: keep it when changing the rest.
        name: String,
        dir: PathBuf,
        #[serde(default = "default_prefix")]
        prefix: String,
        #[serde(default = "default_max_lines")]
        max_lines: usize,
        #[serde(default = "default_max_files")]
        max_files: usize,
    },
    /// Syslog messages carrying CEF lines (at least once, in order; over UDP, what is lost on
    /// the network is lost).
    Syslog {
        name: String,
        /// `HOST:PORT` of the receiver.
        address: String,
        #[serde(default = "default_transport")]
        transport: super::syslog::Transport,
        #[serde(default = "default_format")]
        format: super::syslog::Format,
        /// PEM certificate(s) the receiver's must chain to (TLS).
        cafile: Option<PathBuf>,
    },
    /// Seed 002's webhook: a login, then one Table 1 object per event with the Bearer token.
    Webhook {
        name: String,
        /// Empty: the receiver takes unauthenticated calls.
        login_url: Option<String>,
        url: String,
        #[serde(default)]
        user_name: String,
        #[serde(default)]
        password: String,
        /// PEM certificate(s) an https receiver's must chain to.
        cafile: Option<PathBuf>,
    },
}

fn default_transport() -> super::syslog::Transport {
    super::syslog::Transport::Tcp
}
fn default_format() -> super::syslog::Format {
    super::syslog::Format::Rfc5424
}

fn default_prefix() -> String {
    "ArcSight".into()
}
fn default_max_lines() -> usize {
    10_000
}
fn default_max_files() -> usize {
    100
}

impl SinkConfig {
    pub fn name(&self) -> &str {
        match self {
            SinkConfig::CefFiles { name, .. }
            | SinkConfig::Syslog { name, .. }
            | SinkConfig::Webhook { name, .. } => name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::CefFiles { .. } => "cef_files",
            SinkConfig::Syslog { .. } => "syslog",
            SinkConfig::Webhook { .. } => "webhook",
        }
    }
}

/// What the running sinks last did, for the status the API shows.
#[derive(Debug, Default)]
pub struct Sinks {
    states: std::sync::Mutex<std::collections::BTreeMap<String, SinkState>>,
}

/// One sink's last success and last error.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkState {
    pub kind: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<time::OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<time::OffsetDateTime>,
}

impl Sinks {
    fn update(&self, name: &str, kind: &str, change: impl FnOnce(&mut SinkState)) {
        let mut states = self.states.lock().unwrap();
        let state = states.entry(name.to_string()).or_default();
        state.kind = kind.to_string();
        change(state);
    }

    /// Every configured sink by name.
    pub fn states(&self) -> Vec<(String, SinkState)> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The name of a sink's bus cursor.
pub fn cursor_name(sink: &str) -> String {
    format!("export:{sink}")
}

/// Where an exported event stands in the bus: its entry and, within an entry of several device
/// events, its row. Written into each line (`cn1`, `cn2`) so that the files say where they stop.
type Place = (i64, i64);

fn place(event: &BusEvent) -> Option<Place> {
    match (&event.event, &event.intake) {
        (Some(e), _) => Some((event.seq, e.id)),
        (_, Some(i)) => Some((event.seq, i.id)),
        _ => None,
    }
}

/// The place a CEF line records.
fn place_of_line(line: &str) -> Option<Place> {
    let value = |key: &str| {
        line.split(' ')
            .find_map(|pair| pair.strip_prefix(key))
            .and_then(|v| v.parse::<i64>().ok())
    };
    Some((value("cn1=")?, value("cn2=")?))
}

/// The CEF line of a bus event, if it is an event to export.
fn line(source: &cef::Source, event: &BusEvent) -> Option<String> {
    let (seq, row) = place(event)?;
    let mut line = match (&event.event, &event.intake) {
        (Some(e), _) => cef::device_event(source, seq, e),
        (_, Some(i)) => cef::intake_event(source, seq, &i.event, i.received_at),
        _ => return None,
    };
    line.push_str(&format!(" cn2={row} cn2Label=eventRow"));
    Some(line)
}

/// How long a node's lease on a sink lasts without renewal.
const LEASE: Duration = Duration::from_secs(10);

/// Where a sink writes.
enum Target {
    Files(Arc<std::sync::Mutex<CefFiles>>),
    Syslog {
        client: super::syslog::Syslog,
        format: super::syslog::Format,
        host: String,
    },
    Webhook(super::webhook::Webhook),
}

impl Target {
    /// Opens the target; for files also says where the folder's last line stands.
    async fn open(config: &SinkConfig, host: &str) -> Result<(Target, Option<Place>), String> {
        match config.clone() {
            SinkConfig::CefFiles {
                dir,
                prefix,
                max_lines,
                max_files,
                ..
            } => {
                let opened = tokio::task::spawn_blocking(move || {
                    let files = CefFiles::open(&dir, &prefix, max_lines, max_files)
                        .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
                    let written = files
                        .last_line()
                        .map_err(|e| e.to_string())?
                        .as_deref()
                        .and_then(place_of_line);
                    Ok::<_, String>((files, written))
                })
                .await
                .map_err(|e| e.to_string())??;
                Ok((
                    Target::Files(Arc::new(std::sync::Mutex::new(opened.0))),
                    opened.1,
                ))
            }
            SinkConfig::Syslog {
                address,
                transport,
                format,
                cafile,
                ..
            } => {
                let client = super::syslog::Syslog::new(&address, transport, cafile.as_deref())?;
                Ok((
                    Target::Syslog {
                        client,
                        format,
                        host: host.to_string(),
                    },
                    None,
                ))
            }
            SinkConfig::Webhook {
                login_url,
                url,
                user_name,
                password,
                cafile,
                ..
            } => Ok((
                Target::Webhook(super::webhook::Webhook::new(
                    login_url.as_deref(),
                    &url,
                    &user_name,
                    &password,
                    cafile.as_deref(),
                )?),
                None,
            )),
        }
    }

    /// Writes `lines` (CEF lines with their time and severity), all or none acknowledged.
    async fn write(&mut self, lines: Vec<Exported>) -> Result<(), String> {
        match self {
            Target::Files(files) => {
                let files = files.clone();
                let lines: Vec<String> = lines.into_iter().map(|l| l.line).collect();
                tokio::task::spawn_blocking(move || {
                    files
                        .lock()
                        .unwrap()
                        .append(&lines, time::OffsetDateTime::now_utc())
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("writing CEF files: {e}"))
            }
            Target::Syslog {
                client,
                format,
                host,
            } => {
                let messages: Vec<String> = lines
                    .iter()
                    .map(|l| {
                        let cef = l.line.find("CEF:0|").map_or(&l.line[..], |i| &l.line[i..]);
                        super::syslog::message(*format, host, l.at, l.severity, cef)
                    })
                    .collect();
                client
                    .send(&messages)
                    .await
                    .map_err(|e| format!("sending syslog: {e}"))
            }
            Target::Webhook(webhook) => {
                let objects: Vec<serde_json::Value> = lines.into_iter().map(|l| l.table1).collect();
                webhook.send(&objects).await
            }
        }
    }
}

/// An event to write: its place on the bus, and what its target sends: a CEF line with its time
/// and CEF severity (files, syslog), or a Table 1 object (webhook).
struct Exported {
    place: Place,
    at: time::OffsetDateTime,
    severity: &'static str,
    line: String,
    table1: serde_json::Value,
}

/// What `exported` builds for `target` (the other form is left empty).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Cef,
    Table1,
}

fn exported(source: &cef::Source, event: &BusEvent, form: Form) -> Option<Exported> {
    let place = place(event)?;
    let line = match form {
        Form::Cef => line(source, event)?,
        Form::Table1 => String::new(),
    };
    let now = time::OffsetDateTime::now_utc();
    let table1 = |build: &dyn Fn() -> serde_json::Value| match form {
        Form::Table1 => build(),
        Form::Cef => serde_json::Value::Null,
    };
    let (at, severity, table1) = match (&event.event, &event.intake) {
        (Some(e), _) => (
            e.rise_time.unwrap_or(e.received_at),
            cef::device_severity(e.severity),
            table1(&|| super::webhook::device_event(e, now)),
        ),
        (_, Some(i)) => (
            i.event.orch_timestamp_utc.unwrap_or(i.received_at),
            cef::intake_severity(i.event.event_type),
            table1(&|| super::webhook::intake_event(i, now)),
        ),
        _ => return None,
    };
    Some(Exported {
        place,
        at,
        severity,
        line,
        table1,
    })
}

/// Runs a sink until `stop`: reads the bus from its cursor, writes device and intake events to
/// the target, then moves the cursor. A CEF folder also skips what it already holds (lines synced
/// before a crash, whose cursor did not move yet). A write that fails is tried again, with backoff.
pub async fn run(
    domain: Arc<Domain>,
    sinks: Arc<Sinks>,
    config: SinkConfig,
    host: String,
    mut stop: watch::Receiver<bool>,
) {
    let (name, kind) = (config.name().to_string(), config.kind());
    sinks.update(&name, kind, |_| {});
    let source = cef::Source::new(&host);
    let form = match config {
        SinkConfig::Webhook { .. } => Form::Table1,
        _ => Form::Cef,
    };
    let (mut target, mut written) = match Target::open(&config, &source.host).await {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(sink = %name, error = %e, "export sink cannot start");
            sinks.update(&name, kind, |s| {
                s.last_error = Some(e);
                s.last_error_at = Some(time::OffsetDateTime::now_utc());
            });
            return;
        }
    };
    let mut consumer = loop {
        match domain.bus.consumer(&cursor_name(&name), 0).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(sink = %name, error = %e, "export sink waits for the database");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    tracing::info!(sink = %name, cursor = consumer.position(), "export sink started");
    // With several nodes on one database, one node at a time drives the sink: the holder of its
    // lease, renewed before a pass once a third of it has gone by; another node takes over once it
    // has lapsed.
    let node = uuid::Uuid::new_v4().to_string();
    let mut leading = false;
    let mut renewed: Option<std::time::Instant> = None;
    let mut backoff = Duration::from_millis(200);
    // The next batch, read while the last one was being written.
    let mut ahead: Option<Batch> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let now = time::OffsetDateTime::now_utc();
        let lease = if leading && renewed.is_some_and(|at| at.elapsed() < LEASE / 3) {
            Ok(true)
        } else {
            let taken = domain
                .bus
                .take_lease(&cursor_name(&name), &node, now, now + LEASE)
                .await;
            renewed = matches!(taken, Ok(true)).then(std::time::Instant::now);
            taken
        };
        match lease {
            Ok(true) => {
                if !leading {
                    tracing::info!(sink = %name, node = %node, "this node drives the export sink");
                    leading = true;
                    ahead = None;
                    // Another node may have moved the cursor while this one waited.
                    match domain.bus.consumer(&cursor_name(&name), 0).await {
                        Ok(c) => consumer = c,
                        Err(e) => {
                            tracing::warn!(sink = %name, error = %e, "export sink cursor unreadable")
                        }
                    }
                }
            }
            Ok(false) | Err(_) => {
                if let Err(e) = &lease {
                    tracing::warn!(sink = %name, error = %e, "export sink lease not renewed");
                }
                if leading {
                    let _ = consumer.flush().await;
                }
                leading = false;
                ahead = None;
                consumer.rewind();
                let wait = if lease.is_err() { backoff } else { LEASE / 3 };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
        }
        let batch = match ahead.take() {
            Some(batch) => Ok(batch),
            None => tokio::select! {
                batch = consumer.next(500, Duration::from_secs(1)) => batch,
                _ = stop.changed() => break,
            },
        };
        let result: Result<Option<Batch>, String> = async {
            let batch = batch.map_err(|e| e.to_string())?;
            let Some(through) = batch.through else {
                // Caught up: the database learns where the sink is.
                consumer.flush().await.map_err(|e| e.to_string())?;
                return Ok(None);
            };
            let lines: Vec<Exported> = batch
                .events
                .iter()
                .filter_map(|e| exported(&source, e, form))
                .filter(|l| written.is_none_or(|w| l.place > w))
                .collect();
            let last = lines.last().map(|l| l.place);
            let files = matches!(target, Target::Files(_));
            let write = async {
                if last.is_some() {
                    target.write(lines).await?;
                }
                Ok::<(), String>(())
            };
            // The next batch is read while this one is written and synced.
            let (done, next) = tokio::join!(write, consumer.next(500, Duration::ZERO));
            done?;
            if files && last.is_some() {
                written = last;
            }
            consumer.ack(through).await.map_err(|e| e.to_string())?;
            Ok(next.ok().filter(|b| b.through.is_some()))
        }
        .await;
        match result {
            Ok(next) => {
                ahead = next;
                backoff = Duration::from_millis(200);
                sinks.update(&name, kind, |s| {
                    s.last_success = Some(time::OffsetDateTime::now_utc())
                });
            }
            Err(e) => {
                ahead = None;
                consumer.rewind();
                sinks.update(&name, kind, |s| {
                    s.last_error = Some(e.clone());
                    s.last_error_at = Some(time::OffsetDateTime::now_utc());
                });
                tracing::warn!(sink = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "export sink held back");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    if leading {
        if let Err(e) = consumer.flush().await {
            tracing::warn!(sink = %name, error = %e, "export sink cursor not saved at stop");
        }
    }
}
