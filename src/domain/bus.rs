//! The event bus: what was committed (device events, device lifecycle, audit entries, policy and
//! subscription changes, hand edits in SQL included), in commit order, for everyone who follows it.
//!
//! Every change writes an outbox entry in its own transaction (see `store::BusStore`), so the bus
//! holds exactly what was committed. A tailer task per node reads the outbox as it grows and hands
//! each entry to in-process subscribers at once ([`Bus::subscribe`]); with several nodes on one
//! PostgreSQL database every node's tailer reads every node's entries, woken by notifications.
//! Durable consumers ([`Consumer`]: export sinks, WebSocket resume) read the outbox from a cursor
//! of their own, kept in the database, so that a restart neither skips nor repeats an entry.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};

use super::Result;
use crate::store::{BusRecord, EventRecord, IntakeRecord, PageRequest, Store};

/// What in-process subscribers may fall behind by before they lose entries (and are told so).
const LIVE_CAPACITY: usize = 4096;
/// Entries read from the outbox at a time.
const READ_BATCH: u32 = 500;
/// How often the tailer looks even without a notification (hand edits on SQLite, lost
/// notifications).
const POLL: Duration = Duration::from_secs(1);

/// One thing that happened. Device events are one each, with the stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusEvent {
    /// The outbox entry's place in commit order (the events of one entry share it).
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `device.event`, `device.enrolled`, `device.blocked`, `audit`, `policy.changed`, ...
    pub topic: String,
    /// The device id, group id, account name ... the entry is about.
    pub object_id: Option<String>,
    pub payload: Option<serde_json::Value>,
    /// For `device.event`: the event.
    pub event: Option<EventRecord>,
    /// For `intake.event`: the event.
    pub intake: Option<IntakeRecord>,
}

/// Turns outbox entries into bus events, reading the device events an entry stands for.
async fn expand(store: &dyn Store, record: BusRecord) -> Result<Vec<BusEvent>> {
    if record.topic != "device.events" {
        let intake = match record.topic.as_str() {
            "intake.event" => {
                let id = record
                    .payload
                    .as_ref()
                    .and_then(|p| p.get("id"))
                    .and_then(|id| id.as_i64())
                    .unwrap_or(0);
                let one = PageRequest {
                    offset: 0,
                    limit: 1,
                };
                store
                    .intake_events(Some(id - 1), one)
                    .await?
                    .items
                    .into_iter()
                    .find(|r| r.id == id)
            }
            _ => None,
        };
        return Ok(vec![BusEvent {
            seq: record.seq,
            at: record.at,
            topic: record.topic,
            object_id: record.object_id,
            payload: record.payload,
            event: None,
            intake,
        }]);
    }
    let ids: Vec<i64> = record
        .payload
        .as_ref()
        .and_then(|p| p.get("ids"))
        .and_then(|ids| ids.as_array())
        .map(|ids| ids.iter().filter_map(|i| i.as_i64()).collect())
        .unwrap_or_default();
    let events = store.events_by_rows(record.events, &ids).await?;
    Ok(events
        .into_iter()
        .map(|event| BusEvent {
            seq: record.seq,
            at: record.at,
            topic: "device.event".into(),
            object_id: Some(event.device_id.clone()),
            payload: None,
            event: Some(event),
            intake: None,
        })
        .collect())
}

pub struct Bus {
    store: Arc<dyn Store>,
    live: broadcast::Sender<Arc<BusEvent>>,
    /// The newest entry the tailer has read.
    head: watch::Sender<i64>,
    /// Set by [`Bus::start`]: where the tailer begins.
    started: std::sync::atomic::AtomicBool,
}

impl Bus {
    pub fn new(store: Arc<dyn Store>) -> Bus {
        Bus {
            store,
            live: broadcast::channel(LIVE_CAPACITY).0,
            head: watch::channel(0).0,
            started: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Fixes where the tailer begins: after the newest entry committed now. Called before the
    /// listeners open, so that a subscriber gets everything committed after it subscribed, even
    /// before the tailer first runs.
    pub async fn start(&self) -> Result<()> {
        let head = self.store.bus_head().await?;
        self.head.send_replace(head);
        self.started
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Everything committed from now on, in order. A subscriber that falls more than
    /// [`LIVE_CAPACITY`] entries behind is told how many it lost; a [`Consumer`] loses nothing.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.live.subscribe()
    }

    /// Follows the outbox until `stop` turns true: starts after the newest entry, then, whenever
    /// the store says entries may have been added (and every second), gives new entries their order
    /// (PostgreSQL), reads them and hands them to subscribers.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut seq = loop {
            if self.started.load(std::sync::atomic::Ordering::Acquire) {
                break *self.head.borrow();
            }
            match self.store.bus_head().await {
                Ok(head) => break head,
                Err(e) => {
                    tracing::warn!(error = %e, "the bus cannot read the outbox yet");
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        };
        self.head.send_replace(seq);
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.store.sequence().await {
                tracing::warn!(error = %e, "bus entries not sequenced; retrying");
            }
            match self.catch_up(seq).await {
                Ok(read) => seq = read,
                Err(e) => tracing::warn!(error = %e, "bus entries not read; retrying"),
            }
            tokio::select! {
                _ = self.store.bus_changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Reads and hands out every entry after `seq`; returns the last one read.
    async fn catch_up(&self, mut seq: i64) -> Result<i64> {
        loop {
            let records = self.store.bus_after(seq, READ_BATCH).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                return Ok(seq);
            };
            for record in records {
                // Device events are read back only for someone listening.
                if record.topic == "device.events" && self.live.receiver_count() == 0 {
                    continue;
                }
                for event in expand(&*self.store, record).await? {
                    let _ = self.live.send(Arc::new(event));
                }
            }
            seq = last;
            self.head.send_replace(seq);
        }
    }

    /// The newest entry the tailer has handed out (every event of it and before has been sent to
    /// in-process subscribers).
    pub fn head(&self) -> i64 {
        *self.head.borrow()
    }

    /// Up to `limit` entries after `seq`, read from the outbox and expanded: what a subscriber that
    /// fell behind, or resumes after a reconnect, missed.
    pub async fn history(&self, seq: i64, limit: u32) -> Result<Batch> {
        let _ = self.store.sequence().await;
        let records = self.store.bus_after(seq, limit).await?;
        let through = records.last().map(|r| r.seq);
        let mut events = Vec::new();
        for record in records {
            events.extend(expand(&*self.store, record).await?);
        }
        Ok(Batch { events, through })
    }

    /// Takes or renews the lease of export sink `sink` for `holder` (see `BusStore::take_lease`).
    pub async fn take_lease(
        &self,
        sink: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool> {
        Ok(self.store.take_lease(sink, holder, now, until).await?)
    }

    /// A durable consumer called `name`, at its stored cursor; a new one starts at `start` (0: the
    /// beginning of the outbox).
    pub async fn consumer(&self, name: &str, start: i64) -> Result<Consumer> {
        let cursor = self.store.cursor(name).await?.unwrap_or(start);
        Ok(Consumer {
            name: name.to_string(),
            store: self.store.clone(),
            cursor,
            read: cursor,
            stored: cursor,
            stored_at: None,
            head: self.head.subscribe(),
        })
    }
}

/// Where a durable consumer stands: its cursor, the newest entry, and how far behind it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lag {
    pub cursor: i64,
    pub head: i64,
    /// Entries committed after the cursor.
    pub entries: i64,
    /// Age of the oldest entry after the cursor (zero when there is none).
    pub seconds: f64,
}

impl super::Domain {
    /// Where each of the durable consumers `names` stands (Read on the events area).
    pub async fn consumer_lags(
        &self,
        caller: &super::Caller,
        names: &[String],
    ) -> Result<Vec<Lag>> {
        caller.require(super::FuncArea::Events, super::Access::Read)?;
        let mut lags = Vec::with_capacity(names.len());
        for name in names {
            lags.push(self.consumer_lag(name).await?);
        }
        Ok(lags)
    }

    async fn consumer_lag(&self, name: &str) -> Result<Lag> {
        let cursor = self.store.cursor(name).await?.unwrap_or(0);
        let head = self.store.bus_head().await?;
        let oldest = self.store.bus_after(cursor, 1).await?;
        let seconds = oldest
            .first()
            .map(|r| (self.clock.now() - r.at).as_seconds_f64().max(0.0))
            .unwrap_or(0.0);
        Ok(Lag {
            cursor,
            head,
            entries: (head - cursor).max(0),
            seconds,
        })
    }
}

/// What a [`Consumer`] read: the events, and the last outbox entry they come from (an entry may
/// stand for no event at all, such as the events of a device deleted since).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub events: Vec<BusEvent>,
    pub through: Option<i64>,
}

/// A reader of the bus that keeps its place in the database: after a restart it goes on from the
/// last entry it acknowledged, so nothing is skipped and nothing repeated.
///
/// Reading runs ahead of acknowledging (the next batch may be read while the last one is being
/// written out), and the acknowledged place is written to the database at most every
/// [`CURSOR_EVERY`] and at [`Consumer::flush`], off the sink's critical path: after a crash the
/// consumer may go back a little, never forward past what it handled.
pub struct Consumer {
    name: String,
    store: Arc<dyn Store>,
    /// The last entry acknowledged.
    cursor: i64,
    /// The last entry read.
    read: i64,
    /// The last value written to the database, and when.
    stored: i64,
    stored_at: Option<std::time::Instant>,
    head: watch::Receiver<i64>,
}

/// Events a [`Consumer`] reads at a time, about (whole outbox entries).
pub const MAX_BATCH_EVENTS: usize = 5_000;

/// How often an acknowledged place is written to the database, at most.
pub const CURSOR_EVERY: Duration = Duration::from_millis(250);

impl Consumer {
    /// The last entry acknowledged.
    pub fn position(&self) -> i64 {
        self.cursor
    }

    /// Up to `limit` outbox entries after the last one read, expanded; waits up to `wait` when
    /// there are none yet. [`Consumer::ack`] with the batch's `through` marks them handled;
    /// [`Consumer::rewind`] reads them again.
    pub async fn next(&mut self, limit: u32, wait: Duration) -> Result<Batch> {
        let _ = self.store.sequence().await;
        let mut records = self.store.bus_after(self.read, limit).await?;
        if records.is_empty() && !wait.is_zero() {
            let _ = tokio::time::timeout(wait, self.head.changed()).await;
            let _ = self.store.sequence().await;
            records = self.store.bus_after(self.read, limit).await?;
        }
        // Whole entries, but no more than about MAX_BATCH_EVENTS events (an entry of device events
        // may hold hundreds): memory stays bounded when a sink is behind.
        let mut through = None;
        let mut events = Vec::new();
        for record in records {
            if events.len() >= MAX_BATCH_EVENTS {
                break;
            }
            through = Some(record.seq);
            events.extend(expand(&*self.store, record).await?);
        }
        if let Some(through) = through {
            self.read = through;
        }
        Ok(Batch { events, through })
    }

    /// Goes back to reading after the last entry acknowledged (what was read since is read again).
    pub fn rewind(&mut self) {
        self.read = self.cursor;
    }

    /// Records that everything up to `seq` is handled; the database learns it within
    /// [`CURSOR_EVERY`] (or at [`Consumer::flush`]).
    pub async fn ack(&mut self, seq: i64) -> Result<()> {
        if seq > self.cursor {
            self.cursor = seq;
            self.read = self.read.max(seq);
        }
        if self.stored_at.is_none_or(|at| at.elapsed() >= CURSOR_EVERY) {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the acknowledged place to the database if it moved.
    pub async fn flush(&mut self) -> Result<()> {
        if self.cursor > self.stored {
            self.store.set_cursor(&self.name, self.cursor).await?;
            self.stored = self.cursor;
        }
        self.stored_at = Some(std::time::Instant::now());
        Ok(())
    }
}
