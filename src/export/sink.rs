//! Export sinks: each follows the bus as a durable consumer of its own and hands device and intake
//! events on, in commit order; its cursor moves only once what it read is written, so a sink that
//! stops (or a server that crashes) goes on from where it was, skipping nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
            SinkConfig::CefFiles { name, .. } => name,
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

/// Runs a CEF files sink until `stop`: reads the bus from its cursor, skips what the folder
/// already holds (lines written before a crash, whose cursor did not move yet), appends and syncs
/// the rest, then moves the cursor.
pub async fn run(
    domain: Arc<Domain>,
    sinks: Arc<Sinks>,
    config: SinkConfig,
    host: String,
    mut stop: watch::Receiver<bool>,
) {
    let kind = "cef_files";
    sinks.update(config.name(), kind, |_| {});
    let SinkConfig::CefFiles {
        name,
        dir,
        prefix,
        max_lines,
        max_files,
    } = config;
    let source = cef::Source::new(&host);
    let opened = {
        let (dir, prefix) = (dir.clone(), prefix.clone());
        tokio::task::spawn_blocking(move || {
            let files = CefFiles::open(&dir, &prefix, max_lines, max_files)?;
            let written = files.last_line()?.as_deref().and_then(place_of_line);
            Ok::<_, std::io::Error>((files, written))
        })
        .await
    };
    let (files, mut written) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => {
            tracing::error!(sink = %name, dir = %dir.display(), error = %e, "export sink cannot open its folder");
            sinks.update(&name, kind, |s| {
                s.last_error = Some(format!("cannot open {}: {e}", dir.display()));
                s.last_error_at = Some(time::OffsetDateTime::now_utc());
            });
            return;
        }
        Err(e) => {
            tracing::error!(sink = %name, error = %e, "export sink failed");
            return;
        }
    };
    let files = Arc::new(std::sync::Mutex::new(files));
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
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return;
        }
        let batch = tokio::select! {
            batch = consumer.next(500, Duration::from_secs(1)) => batch,
            _ = stop.changed() => return,
        };
        let result = async {
            let batch = batch?;
            let Some(through) = batch.through else {
                return Ok(());
            };
            let lines: Vec<String> = batch
                .events
                .iter()
                .filter(|e| place(e).is_some_and(|p| written.is_none_or(|w| p > w)))
                .filter_map(|e| line(&source, e))
                .collect();
            if !lines.is_empty() {
                let last = lines.last().and_then(|l| place_of_line(l));
                let files = files.clone();
                tokio::task::spawn_blocking(move || {
                    files
                        .lock()
                        .unwrap()
                        .append(&lines, time::OffsetDateTime::now_utc())
                })
                .await
                .map_err(|e| crate::domain::DomainError::Internal(e.to_string()))?
                .map_err(|e| {
                    crate::domain::DomainError::Unavailable(format!("writing CEF files: {e}"))
                })?;
                written = last.or(written);
            }
            consumer.ack(through).await
        }
        .await;
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(200);
                sinks.update(&name, kind, |s| {
                    s.last_success = Some(time::OffsetDateTime::now_utc())
                });
            }
            Err(e) => {
                sinks.update(&name, kind, |s| {
                    s.last_error = Some(e.to_string());
                    s.last_error_at = Some(time::OffsetDateTime::now_utc());
                });
                tracing::warn!(sink = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "export sink held back");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
