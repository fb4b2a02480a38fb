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
}

/// Where sessions live. `get` returns only live sessions and refreshes their idle timer.
#[async_trait::async_trait]
pub trait Sessions: Send + Sync + 'static {
    async fn insert(&self, session: Session) -> Result<(), SessionError>;
    async fn get(&self, id: &str, now: OffsetDateTime) -> Result<Option<Session>, SessionError>;
    /// Stores a session changed by a request (a no-op if it ended meanwhile).
    async fn update(&self, session: &Session) -> Result<(), SessionError>;
    async fn remove(&self, id: &str) -> Result<bool, SessionError>;
    /// Drops expired sessions; returns how many.
    async fn sweep(&self, now: OffsetDateTime) -> Result<usize, SessionError>;
}

const SHARDS: usize = 16;

/// Sessions in this process's memory, sharded to keep lock hold times short under load.
pub struct MemorySessions {
    expiry: Expiry,
    shards: Vec<Mutex<HashMap<String, Session>>>,
}

impl MemorySessions {
    pub fn new(expiry: Expiry) -> MemorySessions {
        MemorySessions {
            expiry,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<String, Session>> {
        let h = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shards[h % SHARDS]
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl Sessions for MemorySessions {
    async fn insert(&self, session: Session) -> Result<(), SessionError> {
        self.shard(&session.id)
            .lock()
            .unwrap()
            .insert(session.id.clone(), session);
        Ok(())
    }

    async fn get(&self, id: &str, now: OffsetDateTime) -> Result<Option<Session>, SessionError> {
        let mut shard = self.shard(id).lock().unwrap();
        let Some(session) = shard.get_mut(id) else {
            return Ok(None);
        };
        if self.expiry.expired(session, now) {
            shard.remove(id);
            return Ok(None);
        }
        session.last_used = now;
        Ok(Some(session.clone()))
    }

    async fn update(&self, session: &Session) -> Result<(), SessionError> {
        if let Some(stored) = self.shard(&session.id).lock().unwrap().get_mut(&session.id) {
            *stored = session.clone();
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<bool, SessionError> {
        Ok(self.shard(id).lock().unwrap().remove(id).is_some())
    }

    async fn sweep(&self, now: OffsetDateTime) -> Result<usize, SessionError> {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap();
            let before = shard.len();
            shard.retain(|_, s| !self.expiry.expired(s, now));
            removed += before - shard.len();
        }
        Ok(removed)
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
    store: Arc<dyn Store>,
    guards: Mutex<HashMap<String, LocalGuard>>,
}

struct LocalGuard {
    created: OffsetDateTime,
    last_used: OffsetDateTime,
    guard: DownloadGuard,
}

impl StoredSessions {
    pub fn new(store: Arc<dyn Store>, expiry: Expiry) -> StoredSessions {
        StoredSessions {
            expiry,
            store,
            guards: Mutex::new(HashMap::new()),
        }
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
        self.store
            .insert_session(&Self::to_stored(&session)?)
            .await
            .map_err(storage)
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
}

/// The sessions a server uses: in the database when `shared` says so, which by default is when the
/// database is PostgreSQL (the one several nodes can share); in memory otherwise.
pub fn for_store(store: Arc<dyn Store>, shared: Option<bool>, expiry: Expiry) -> Arc<dyn Sessions> {
    if shared.unwrap_or(store.backend() == Backend::Postgres) {
        Arc::new(StoredSessions::new(store, expiry))
    } else {
        Arc::new(MemorySessions::new(expiry))
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
        let sessions = MemorySessions::new(Expiry {
            idle: Duration::from_secs(10),
            absolute: Duration::from_secs(25),
        });
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
}
