//! Device sessions: random ids, idle and absolute expiry, and the per-session sync progress.
//!
//! Behind the [`Sessions`] trait: [`MemorySessions`] for a single node, [`StoredSessions`] when
//! several server nodes share one database and a device's calls may reach any of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::soap::Params;
use crate::store::{Backend, SessionCutoff, Store, StoredSession};
use crate::sync::{Known, Progress, Step};
use crate::updates::DownloadGuard;

/// The five hashes a device reported in the Heartbeat that started the current sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedHashes {
    pub info: Vec<u8>,
    pub state: Vec<u8>,
    pub stgs: Vec<u8>,
    pub pol: Vec<u8>,
    pub sbsc: Vec<u8>,
}

/// A command sent to the device and what recording its result needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Awaiting {
    AppInfo,
    AppState,
    SettingsGet,
    SettingsPut { tree: Params, rev: i64 },
    PolicyPut { digest: Vec<u8> },
    SubscriptionsPut { digest: Vec<u8> },
}

impl Awaiting {
    pub fn step(&self) -> Step {
        match self {
            Awaiting::AppInfo => Step::AppInfoGet,
            Awaiting::AppState => Step::AppStateGet,
            Awaiting::SettingsGet => Step::SettingsGet,
            Awaiting::SettingsPut { .. } => Step::SettingsPut,
            Awaiting::PolicyPut { .. } => Step::PolicyPut,
            Awaiting::SubscriptionsPut { .. } => Step::SubscriptionsPut,
        }
    }
}

/// The sync a Heartbeat started, carried through the PutResult calls that follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub reported: ReportedHashes,
    pub known: Known,
    pub group_id: i64,
    pub progress: Progress,
    pub awaiting: Option<Awaiting>,
    pub commands_sent: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    /// Row id of the device.
    pub device: i64,
    pub device_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_used: OffsetDateTime,
    pub sync: Option<SyncRun>,
    /// Files this session is downloading (never shared between nodes: a restart of the download is
    /// the worst case).
    #[serde(skip)]
    pub downloads: DownloadGuard,
}

impl Session {
    pub fn new(device: i64, device_id: &str, now: OffsetDateTime) -> Session {
        Session {
            id: new_session_id(),
            device,
            device_id: device_id.to_string(),
            created: now,
            last_used: now,
            sync: None,
            downloads: DownloadGuard::default(),
        }
    }
}

/// 144 random bits as 24 URL-safe base64 characters: printable ASCII within the 32-character limit.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry {
            idle: Duration::from_secs(600),
            absolute: Duration::from_secs(3600),
        }
    }
}

impl Expiry {
    pub fn expired(&self, s: &Session, now: OffsetDateTime) -> bool {
        now - s.last_used > self.idle || now - s.created > self.absolute
    }

    /// The same rule as [`Expiry::expired`], as bounds a database can compare with.
    pub fn cutoff(&self, now: OffsetDateTime) -> SessionCutoff {
        SessionCutoff {
            used_since: now - self.idle,
            created_since: now - self.absolute,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session storage failed: {0}")]
    Storage(String),
    /// The server holds as many sessions as it may: a new one must wait until others end.
    #[error("the server holds too many sessions")]
    Full,
}

/// How many sessions may be live: per device (a new session replaces the device's oldest) and in
/// all (a new session for a device under its own limit is refused). Together they bound what a
/// client can make the server hold, however many SessionBegin calls it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub per_device: usize,
    pub total: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            per_device: 4,
            total: 200_000,
        }
    }
}

/// Where sessions live. `get` returns only live sessions and refreshes their idle timer.
#[async_trait::async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// Adds a session within the [`SessionLimits`]: the device's oldest session makes room if the
    /// device is at its limit; [`SessionError::Full`] if the server is.
    async fn insert(&self, session: Session) -> Result<(), SessionError>;
    async fn get(&self, id: &str, now: OffsetDateTime) -> Result<Option<Session>, SessionError>;
    /// Stores a session changed by a request (a no-op if it ended meanwhile).
    async fn update(&self, session: &Session) -> Result<(), SessionError>;
    async fn remove(&self, id: &str) -> Result<bool, SessionError>;
    /// Drops expired sessions; returns how many.
    async fn sweep(&self, now: OffsetDateTime) -> Result<usize, SessionError>;
    /// Ends every session of a device (blocked or reset); returns how many.
    async fn end_device(&self, device: i64) -> Result<usize, SessionError>;
    /// How many sessions are held (for shared sessions, as of the last count).
    async fn count(&self) -> Result<usize, SessionError>;
}

const SHARDS: usize = 16;

/// Sessions in this process's memory, sharded to keep lock hold times short under load. Besides
/// the sessions by id, it keeps each device's session ids (oldest first) to enforce the per-device
/// limit, and a count for the total one.
pub struct MemorySessions {
    expiry: Expiry,
    limits: SessionLimits,
    shards: Vec<Mutex<HashMap<String, Session>>>,
    devices: Vec<Mutex<HashMap<i64, Vec<String>>>>,
    held: std::sync::atomic::AtomicUsize,
}

impl MemorySessions {
    pub fn new(expiry: Expiry, limits: SessionLimits) -> MemorySessions {
        MemorySessions {
            expiry,
            limits,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            devices: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            held: Default::default(),
        }
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<String, Session>> {
        let h = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shards[h % SHARDS]
    }

    fn device_shard(&self, device: i64) -> &Mutex<HashMap<i64, Vec<String>>> {
        &self.devices[device.rem_euclid(SHARDS as i64) as usize]
    }

    /// Takes the session `id` out of the table by id; the caller updates the device's list.
    fn take(&self, id: &str) -> Option<Session> {
        let removed = self.shard(id).lock().unwrap().remove(id);
        if removed.is_some() {
            self.held.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        removed
    }

    /// Forgets `id` in the list of `device`.
    fn unlist(&self, device: i64, id: &str) {
        let mut devices = self.device_shard(device).lock().unwrap();
        if let Some(ids) = devices.get_mut(&device) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                devices.remove(&device);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl Sessions for MemorySessions {
    async fn insert(&self, session: Session) -> Result<(), SessionError> {
        let device = session.device;
        let mut devices = self.device_shard(device).lock().unwrap();
        let ids = devices.entry(device).or_default();
        // Sessions that expired or ended are no longer in the table.
        ids.retain(|id| self.shard(id).lock().unwrap().contains_key(id));
        // At the total, a device may only replace one of its own sessions.
        let full = self.len() >= self.limits.total;
        if full && ids.is_empty() {
            devices.remove(&device);
            return Err(SessionError::Full);
        }
        let keep = if full {
            ids.len() - 1
        } else {
            self.limits.per_device.max(1) - 1
        };
        while ids.len() > keep {
            let oldest = ids.remove(0);
            self.take(&oldest);
        }
        ids.push(session.id.clone());
        self.shard(&session.id)
            .lock()
            .unwrap()
            .insert(session.id.clone(), session);
        self.held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn get(&self, id: &str, now: OffsetDateTime) -> Result<Option<Session>, SessionError> {
        let expired = {
            let mut shard = self.shard(id).lock().unwrap();
            let Some(session) = shard.get_mut(id) else {
                return Ok(None);
            };
            if !self.expiry.expired(session, now) {
                session.last_used = now;
                return Ok(Some(session.clone()));
            }
            session.device
        };
        if self.take(id).is_some() {
            self.unlist(expired, id);
        }
        Ok(None)
    }

    async fn update(&self, session: &Session) -> Result<(), SessionError> {
        if let Some(stored) = self.shard(&session.id).lock().unwrap().get_mut(&session.id) {
            *stored = session.clone();
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<bool, SessionError> {
        match self.take(id) {
            Some(session) => {
                self.unlist(session.device, id);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn sweep(&self, now: OffsetDateTime) -> Result<usize, SessionError> {
        let mut removed = Vec::new();
        for shard in &self.shards {
            shard.lock().unwrap().retain(|id, s| {
                let expired = self.expiry.expired(s, now);
                if expired {
                    removed.push((s.device, id.clone()));
                }
                !expired
            });
        }
        self.held
            .fetch_sub(removed.len(), std::sync::atomic::Ordering::Relaxed);
        for (device, id) in &removed {
            self.unlist(*device, id);
        }
        Ok(removed.len())
    }

    async fn end_device(&self, device: i64) -> Result<usize, SessionError> {
        let ids = self
            .device_shard(device)
            .lock()
            .unwrap()
            .remove(&device)
            .unwrap_or_default();
        Ok(ids.iter().filter(|id| self.take(id).is_some()).count())
    }

    async fn count(&self) -> Result<usize, SessionError> {
        Ok(self.len())
    }
}

/// Sessions in the database, shared by every server node that uses it.
///
/// A session's download guard names file versions by device and inode, which mean something only
/// on the node that read the file: it stays in that node's memory, and only for sessions that
/// download. A device that moves to another node in the middle of a download is checked from there
/// on against what that node reads.
pub struct StoredSessions {
    expiry: Expiry,
    limits: SessionLimits,
    store: Arc<dyn Store>,
    guards: Mutex<HashMap<String, LocalGuard>>,
    /// The number of rows as last counted, plus this node's inserts since; recounted every
    /// [`RECOUNT`] at most, so the total limit costs no query per session.
    held: Mutex<(std::time::Instant, usize)>,
}

/// How stale the count of shared sessions may get before an insert counts them again.
const RECOUNT: Duration = Duration::from_secs(5);

struct LocalGuard {
    created: OffsetDateTime,
    last_used: OffsetDateTime,
    guard: DownloadGuard,
}

impl StoredSessions {
    pub fn new(store: Arc<dyn Store>, expiry: Expiry, limits: SessionLimits) -> StoredSessions {
        StoredSessions {
            expiry,
            limits,
            store,
            guards: Mutex::new(HashMap::new()),
            held: Mutex::new((std::time::Instant::now() - RECOUNT * 2, 0)),
        }
    }

    /// The number of shared sessions, counted again if the last count is stale.
    async fn held(&self) -> Result<usize, SessionError> {
        let (at, n) = *self.held.lock().unwrap();
        if at.elapsed() < RECOUNT {
            return Ok(n);
        }
        let n = usize::try_from(self.store.session_count().await.map_err(storage)?)
            .unwrap_or(usize::MAX);
        *self.held.lock().unwrap() = (std::time::Instant::now(), n);
        Ok(n)
    }

    fn to_stored(session: &Session) -> Result<StoredSession, SessionError> {
        Ok(StoredSession {
            id: session.id.clone(),
            device: session.device,
            created: session.created,
            last_used: session.last_used,
            data: serde_json::to_value(session).map_err(storage)?,
        })
    }
}

fn storage(e: impl std::fmt::Display) -> SessionError {
    SessionError::Storage(e.to_string())
}

#[async_trait::async_trait]
impl Sessions for StoredSessions {
    async fn insert(&self, session: Session) -> Result<(), SessionError> {
        // At the total, a device may still replace one of its own sessions: that does not grow
        // the table. The store trims the device's oldest beyond its limit in the same write.
        let per_device = self.limits.per_device.max(1);
        let full = self.held().await? >= self.limits.total;
        let replaced = self
            .store
            .insert_session(&Self::to_stored(&session)?, per_device, !full)
            .await
            .map_err(storage)?;
        match replaced {
            None => Err(SessionError::Full),
            Some(0) => {
                self.held.lock().unwrap().1 += 1;
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    async fn get(&self, id: &str, now: OffsetDateTime) -> Result<Option<Session>, SessionError> {
        let Some(stored) = self
            .store
            .touch_session(id, now, &self.expiry.cutoff(now))
            .await
            .map_err(storage)?
        else {
            self.guards.lock().unwrap().remove(id);
            return Ok(None);
        };
        let mut session: Session = serde_json::from_value(stored.data).map_err(storage)?;
        // The columns are what the database compared; the JSON copy may lag behind them.
        session.device = stored.device;
        session.created = stored.created;
        session.last_used = stored.last_used;
        if let Some(local) = self.guards.lock().unwrap().get_mut(id) {
            local.last_used = now;
            session.downloads = local.guard.clone();
        }
        Ok(Some(session))
    }

    async fn update(&self, session: &Session) -> Result<(), SessionError> {
        {
            let mut guards = self.guards.lock().unwrap();
            if session.downloads.is_empty() {
                guards.remove(&session.id);
            } else {
                guards.insert(
                    session.id.clone(),
                    LocalGuard {
                        created: session.created,
                        last_used: session.last_used,
                        guard: session.downloads.clone(),
                    },
                );
            }
        }
        self.store
            .update_session(&Self::to_stored(session)?)
            .await
            .map_err(storage)
    }

    async fn remove(&self, id: &str) -> Result<bool, SessionError> {
        self.guards.lock().unwrap().remove(id);
        self.store.remove_session(id).await.map_err(storage)
    }

    async fn sweep(&self, now: OffsetDateTime) -> Result<usize, SessionError> {
        self.guards.lock().unwrap().retain(|_, local| {
            now - local.last_used <= self.expiry.idle && now - local.created <= self.expiry.absolute
        });
        let n = self
            .store
            .sweep_sessions(&self.expiry.cutoff(now))
            .await
            .map_err(storage)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn end_device(&self, device: i64) -> Result<usize, SessionError> {
        let n = self
            .store
            .remove_device_sessions(device)
            .await
            .map_err(storage)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn count(&self) -> Result<usize, SessionError> {
        let n = self.store.session_count().await.map_err(storage)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// The sessions a server uses: in the database when `shared` says so, which by default is when the
/// database is PostgreSQL (the one several nodes can share); in memory otherwise.
pub fn for_store(
    store: Arc<dyn Store>,
    shared: Option<bool>,
    expiry: Expiry,
    limits: SessionLimits,
) -> Arc<dyn Sessions> {
    if shared.unwrap_or(store.backend() == Backend::Postgres) {
        Arc::new(StoredSessions::new(store, expiry, limits))
    } else {
        Arc::new(MemorySessions::new(expiry, limits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_printable_and_short() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert!(a.len() <= 32);
        assert!(a.bytes().all(|c| c.is_ascii_graphic()));
    }

    #[tokio::test]
    async fn sessions_expire_when_idle_or_old() {
        let sessions = MemorySessions::new(
            Expiry {
                idle: Duration::from_secs(10),
                absolute: Duration::from_secs(25),
            },
            SessionLimits::default(),
        );
        let t0 = OffsetDateTime::now_utc();
        let s = Session::new(1, "dev", t0);
        let id = s.id.clone();
        sessions.insert(s).await.unwrap();
        let at = |secs: i64| t0 + time::Duration::seconds(secs);
        assert!(sessions.get(&id, at(9)).await.unwrap().is_some());
        assert!(
            sessions.get(&id, at(18)).await.unwrap().is_some(),
            "idle timer refreshed"
        );
        assert!(
            sessions.get(&id, at(26)).await.unwrap().is_none(),
            "absolute lifetime"
        );
        let s = Session::new(1, "dev", t0);
        let id = s.id.clone();
        sessions.insert(s).await.unwrap();
        assert!(sessions.get(&id, at(11)).await.unwrap().is_none(), "idle");
        sessions.insert(Session::new(1, "dev", t0)).await.unwrap();
        assert_eq!(sessions.sweep(at(11)).await.unwrap(), 1);
        assert!(sessions.is_empty());
    }

    #[tokio::test]
    async fn sessions_are_bounded_per_device_and_in_all() {
        let sessions = MemorySessions::new(
            Expiry::default(),
            SessionLimits {
                per_device: 3,
                total: 10,
            },
        );
        let now = OffsetDateTime::now_utc();
        let mut ids = Vec::new();
        for _ in 0..1000 {
            let s = Session::new(1, "flood", now);
            ids.push(s.id.clone());
            sessions.insert(s).await.unwrap();
        }
        assert_eq!(sessions.len(), 3);
        assert!(
            sessions.get(&ids[996], now).await.unwrap().is_none(),
            "replaced"
        );
        for id in &ids[997..] {
            assert!(
                sessions.get(id, now).await.unwrap().is_some(),
                "newest kept"
            );
        }
        for device in 2..=8 {
            sessions
                .insert(Session::new(device, "d", now))
                .await
                .unwrap();
        }
        assert_eq!(sessions.len(), 10);
        assert!(matches!(
            sessions.insert(Session::new(9, "d", now)).await,
            Err(SessionError::Full)
        ));
        sessions
            .insert(Session::new(1, "flood", now))
            .await
            .unwrap();
        assert_eq!(
            sessions.len(),
            10,
            "a device at the total may replace its own"
        );
        assert_eq!(sessions.end_device(1).await.unwrap(), 3);
        assert_eq!(sessions.len(), 7);
        assert!(sessions.get(&ids[999], now).await.unwrap().is_none());
        sessions.insert(Session::new(9, "d", now)).await.unwrap();
    }
}
