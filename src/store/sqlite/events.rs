//! Event intake on SQLite: the events of every PutEvents call in a writer batch go in together.
//!
//! One prepared statement runs row by row, with no intermediate argument buffers. Should a row
//! fail, each call is retried in a savepoint of its own, so that one caller's bad rows (say, of a
//! device deleted meanwhile) fail that caller alone. The writer counts the viruses found among the
//! new rows in `device_infections` (a trigger would cost a statement journal per row), and one bus
//! entry stands for all the rows of the batch.

use std::collections::HashMap;

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::super::{Result, StoreError};
use super::Lite;

/// The events of one PutEvents call, and where to say whether they were committed.
pub(super) struct EventsJob {
    pub(super) device: i64,
    pub(super) events: Vec<crate::events::StoredEvent>,
    pub(super) received_at: String,
    pub(super) address: String,
    pub(super) done: oneshot::Sender<Result<()>>,
}

/// One event; a resend of (device, event_id) is skipped.
const INSERT_EVENT: &str = "INSERT INTO events (device, event_id, severity, product_name,
    product_version, event_type, event_type_display_name, descr, locid, rise_time, rise_time_ms,
    par1, par2, par3, par4, par5, par6, par7, par8, par9,
    object_name, virus_name, uid, user_name, detection_type, attack_name, protocol, ip_address, port,
    truncated, odd_fields, received_at, source_address)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
        ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)
    ON CONFLICT (device, event_id) DO NOTHING";

/// Adds `?2` viruses found to device `?1`, the last at `?3` named `?4`.
const COUNT_INFECTIONS: &str = "INSERT INTO device_infections
        (device, viruses_found, last_virus_at, last_virus_name) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (device) DO UPDATE SET viruses_found = viruses_found + excluded.viruses_found,
        last_virus_at = excluded.last_virus_at, last_virus_name = excluded.last_virus_name";

/// Inserts the events of all `jobs`; returns each job's outcome, in order.
pub(super) fn insert_jobs(
    db: &mut Connection,
    jobs: &[EventsJob],
    runtime: &tokio::runtime::Runtime,
) -> Vec<Result<()>> {
    if jobs.is_empty() {
        return Vec::new();
    }
    // The rows and their bus entry go in together or not at all: an event that is stored but not
    // on the bus would never be exported.
    let batch = in_savepoint(db, "event_batch", |db| {
        let mut rows = Rows::default();
        let all = in_savepoint(db, "events", |db| insert_rows(db, jobs, &mut rows));
        let outcomes: Vec<Result<()>> = match all {
            Ok(()) => jobs.iter().map(|_| Ok(())).collect(),
            Err(e) if jobs.len() == 1 => vec![Err(e)],
            Err(_) => {
                rows = Rows::default();
                jobs.iter()
                    .map(|job| {
                        in_savepoint(db, "events", |db| {
                            insert_rows(db, std::slice::from_ref(job), &mut rows)
                        })
                    })
                    .collect()
            }
        };
        if let Some(range) = rows.range() {
            let mut conn = Lite::new(db);
            let entry = super::super::shared::bus::append(
                &mut conn,
                "device.events",
                None,
                None,
                Some(range),
            );
            runtime.block_on(entry)?;
        }
        Ok(outcomes)
    });
    batch.unwrap_or_else(|e| all_failed(jobs, e))
}

/// The same error for every job: nothing of theirs was written.
fn all_failed(jobs: &[EventsJob], e: impl std::fmt::Display) -> Vec<Result<()>> {
    jobs.iter()
        .map(|_| Err(StoreError::Unavailable(format!("events not stored: {e}"))))
        .collect()
}

/// Runs `f` in the savepoint `name`: all it wrote stays, or none of it.
fn in_savepoint<T>(
    db: &mut Connection,
    name: &str,
    f: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    db.execute_batch(&format!("SAVEPOINT {name}"))?;
    let outcome = f(db);
    if outcome.is_err() {
        db.execute_batch(&format!("ROLLBACK TO {name}"))?;
    }
    db.execute_batch(&format!("RELEASE {name}"))?;
    outcome
}

/// The rows a batch added: with one writer their ids are consecutive but for resends skipped.
#[derive(Default)]
struct Rows {
    first: Option<i64>,
    last: Option<i64>,
}

impl Rows {
    fn add(&mut self, id: i64) {
        self.first = Some(self.first.map_or(id, |f| f.min(id)));
        self.last = Some(self.last.map_or(id, |l| l.max(id)));
    }

    fn range(&self) -> Option<(i64, i64)> {
        self.first.zip(self.last)
    }
}

/// Viruses found among a device's newly stored events.
#[derive(Default)]
struct Infections<'a> {
    found: i64,
    last_at: &'a str,
    last_name: Option<&'a str>,
}

/// Inserts the events of `jobs`, skipping resends, and adds the viruses found among the new ones to
/// `device_infections`.
fn insert_rows(db: &Connection, jobs: &[EventsJob], rows: &mut Rows) -> Result<()> {
    let mut insert = db.prepare_cached(INSERT_EVENT)?;
    let mut infections: HashMap<i64, Infections> = HashMap::new();
    let mut added = Rows::default();
    for job in jobs {
        for e in &job.events {
            let n = &e.named;
            let [p1, p2, p3, p4, p5, p6, p7, p8, p9] = &e.par;
            let stored = insert.execute(params![
                job.device,
                e.event_id,
                e.severity,
                e.product_name,
                e.product_version,
                e.event_type,
                e.event_type_display_name,
                e.descr,
                e.locid,
                e.rise_time.map(crate::store::timestamp),
                e.rise_time_ms,
                p1,
                p2,
                p3,
                p4,
                p5,
                p6,
                p7,
                p8,
                p9,
                n.object_name,
                n.virus_name,
                n.uid,
                n.user_name,
                n.detection_type,
                n.attack_name,
                n.protocol,
                n.ip_address,
                n.port,
                e.truncated,
                (!e.odd_fields.is_empty()).then(|| e.odd_fields.join(",")),
                job.received_at,
                job.address,
            ])? == 1;
            if !stored {
                continue;
            }
            added.add(db.last_insert_rowid());
            if e.event_type.as_deref() == Some(crate::events::VIRUS_FOUND) {
                let device = infections.entry(job.device).or_default();
                device.found += 1;
                device.last_at = &job.received_at;
                device.last_name = n.virus_name.as_deref();
            }
        }
    }
    if !infections.is_empty() {
        let mut count = db.prepare_cached(COUNT_INFECTIONS)?;
        for (device, i) in infections {
            count.execute(params![device, i.found, i.last_at, i.last_name])?;
        }
    }
    if let Some((first, last)) = added.range() {
        rows.add(first);
        rows.add(last);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use super::*;
    use crate::soap::{EventBody, EventInfo};
    use crate::store::{DeviceStore, EventStore, Seen};
    use time::OffsetDateTime;

    fn job(device: i64, ids: &[&str]) -> (EventsJob, oneshot::Receiver<Result<()>>) {
        let (done, result) = oneshot::channel();
        let events = ids
            .iter()
            .map(|id| {
                crate::events::normalize(EventInfo {
                    event_id: id.to_string(),
                    body: EventBody {
                        event_type: Some("GNRL_EV_VIRUS_FOUND".into()),
                        ..EventBody::default()
                    },
                })
            })
            .collect();
        let job = EventsJob {
            device,
            events,
            received_at: crate::store::timestamp(OffsetDateTime::now_utc()),
            address: "192.0.2.1".into(),
            done,
        };
        (job, result)
    }

    /// Callers' events are inserted together; a caller whose rows cannot be stored fails alone, and
    /// one bus entry names the rows the batch added.
    #[tokio::test]
    async fn merged_events_fail_only_the_caller_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let seen = Seen {
            at: OffsetDateTime::now_utc(),
            address: "192.0.2.1".into(),
        };
        let device = store
            .enrol_device("merged-1", b"credential", &seen)
            .await
            .unwrap()
            .unwrap();
        let mut conn = super::super::connect(&dir.path().join("db.sqlite")).unwrap();

        // Together: a device that does not exist fails the shared savepoint, so each caller is
        // retried alone.
        let (a, _) = job(device, &["1", "2", "3"]);
        let (missing, _) = job(device + 1000, &["1"]);
        let (resent, _) = job(device, &["3", "4"]);
        conn.execute_batch("BEGIN").unwrap();
        // The writer's own runtime drives the shared statements, away from the test's runtime.
        let outcomes = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    insert_jobs(&mut conn, &[a, missing, resent], &runtime)
                })
                .join()
                .unwrap()
        });
        conn.execute_batch("COMMIT").unwrap();
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(outcomes[1].is_err(), "{outcomes:?}");
        let mut ids: Vec<String> = conn
            .prepare("SELECT event_id FROM events WHERE device = ?1 ORDER BY event_id")
            .unwrap()
            .query_map([device], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, ["1", "2", "3", "4"]);
        let (first, last): (i64, i64) = conn
            .query_row(
                "SELECT first_event, last_event FROM outbox WHERE topic = 'device.events'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let (min, max): (i64, i64) = conn
            .query_row("SELECT min(id), max(id) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((first, last), (min, max));

        // Through the writer: every caller gets its answer once committed; a resend adds nothing.
        let jobs: Vec<_> = (0..300)
            .map(|i| {
                let store = &store;
                let seen = &seen;
                async move {
                    let (job, _) = job(device, &[&format!("w{}", i % 150), &format!("x{i}")]);
                    store.store_events(device, job.events, seen).await
                }
            })
            .collect();
        for outcome in futures_util::future::join_all(jobs).await {
            outcome.unwrap();
        }
        assert_eq!(store.event_count().await.unwrap(), 4 + 150 + 300);
        let infections: i64 = conn
            .query_row(
                "SELECT viruses_found FROM device_infections WHERE device = ?1",
                [device],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(infections, 4 + 150 + 300);

        // Only viruses found count, and the last one names the device's last infection.
        let (mut mixed, _) = job(device, &["v1", "scan", "v2"]);
        mixed.events[1].event_type = Some("GNRL_EV_SCAN_FINISHED".into());
        mixed.events[0].named.virus_name = Some("EICAR-A".into());
        mixed.events[2].named.virus_name = Some("EICAR-B".into());
        store
            .store_events(device, mixed.events, &seen)
            .await
            .unwrap();
        let (found, name): (i64, Option<String>) = conn
            .query_row(
                "SELECT viruses_found, last_virus_name FROM device_infections WHERE device = ?1",
                [device],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (found, name.as_deref()),
            (4 + 150 + 300 + 2, Some("EICAR-B"))
        );
        // Every stored event is covered by exactly one bus entry.
        let covered: i64 = conn
            .query_row(
                "SELECT count(*) FROM events e WHERE EXISTS (SELECT 1 FROM outbox o
                     WHERE o.topic = 'device.events' AND e.id BETWEEN o.first_event AND o.last_event)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(covered, 4 + 150 + 300 + 3);
        drop(conn);
        crate::store::Maintenance::close(&store).await;
    }
}
