//! The admin domain: the operations every admin surface (REST API, command line, WebSocket API,
//! console) calls, with the rules they share, checked here and nowhere else.
//!
//! - [`rights`]: functional areas, roles, and the [`Caller`] each operation is checked against.
//! - [`accounts`]: admin accounts with argon2id passwords, logins, the initial administrator.
//! - [`tokens`]: API and session tokens (JWTs with a database row), seed 001's rules.
//! - [`throttle`]: failed logins of devices and admins, counted in the database.
//! - [`devices`]: groups, devices, queued settings.
//! - [`policy`]: policy rows, the effective policy with where each value comes from, subscriptions.
//! - [`queries`]: events, the audit trail, update files.
//! - [`intake`]: seed 002's event intake: its tokens and Table 1.
//! - [`live`]: the live API's rules (seed 003).
//! - [`backend`]: product backend commands routed to service consoles (seed 000).
//! - [`bus`]: what was committed, in commit order, to in-process subscribers and durable consumers.
//!
//! Every change goes through the store in one transaction with its audit entry; a failed change
//! leaves neither.

pub mod accounts;
pub mod backend;
pub mod bus;
pub mod devices;
pub mod intake;
pub mod live;
pub mod policy;
pub mod queries;
pub mod rights;
pub mod throttle;
pub mod tokens;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::sessions::Sessions;
use crate::store::{AuditEntry, Store, StoreError};

pub use rights::{Access, Caller, FuncArea, Role};

/// Why an admin operation failed. Each surface maps these once to its own error form.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DomainError {
    /// No valid credentials (no token, a wrong password, an expired or revoked token).
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right for this operation.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Input that breaks a rule (a malformed name, a value of the wrong type).
    #[error("{0}")]
    Invalid(String),
    /// A mandatory field was not given (its name).
    #[error("{0} is missing")]
    Missing(String),
    /// Input that conflicts with what exists (a duplicate, a group that is not empty, a token
    /// deleted before it expired, the token cap).
    #[error("{0}")]
    Conflict(String),
    /// A limit was reached (throttled logins); may succeed after `retry_after`.
    #[error("{message}; try again in {} seconds", retry_after.as_secs().max(1))]
    TryLater {
        message: String,
        retry_after: Duration,
    },
    /// Input over a size limit (an upload).
    #[error("{0}")]
    TooLarge(String),
    /// The database cannot be reached now.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> DomainError {
        match e {
            StoreError::NotFound(m) => DomainError::NotFound(m),
            StoreError::Conflict(m) => DomainError::Conflict(m),
            StoreError::Invalid(m) => DomainError::Invalid(m),
            StoreError::Unavailable(m) => DomainError::Unavailable(m),
            StoreError::Internal(m) => DomainError::Internal(m),
        }
    }
}

impl From<crate::sessions::SessionError> for DomainError {
    fn from(e: crate::sessions::SessionError) -> DomainError {
        DomainError::Unavailable(e.to_string())
    }
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

/// A warning that goes with a change that was made but is not complete (seed 001's soft errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// A group of notices, such as `SYNC`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// UPPER_SNAKE, such as `PENDING_NEXT_HEARTBEAT`.
    pub code: &'static str,
}

impl Notice {
    /// Settings or policy saved, delivered at the device's next sync.
    pub const PENDING_NEXT_HEARTBEAT: Notice = Notice {
        kind: "SYNC",
        code: "PENDING_NEXT_HEARTBEAT",
    };
    /// The row is stored, but an ancestor's lock wins.
    pub const SHADOWED_BY_ANCESTOR_LOCK: Notice = Notice {
        kind: "POLICY",
        code: "SHADOWED_BY_ANCESTOR_LOCK",
    };
    /// A product backend command was stored, but no service console serves its product and
    /// version: it failed at once.
    pub const NO_BACKEND: Notice = Notice {
        kind: "BACKEND",
        code: backend::ERR_NO_BACKEND,
    };
    /// The change applies to a blocked device, which will not see it until it is unblocked.
    pub const DEVICE_BLOCKED: Notice = Notice {
        kind: "DEVICE",
        code: "DEVICE_BLOCKED",
    };
}

/// What a change made: the object as it is now, its audit entry, and any notices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changed<T> {
    pub value: T,
    pub audit: AuditEntry,
    pub notices: Vec<Notice>,
}

impl<T> Changed<T> {
    fn new((value, audit): (T, AuditEntry)) -> Changed<T> {
        Changed {
            value,
            audit,
            notices: Vec::new(),
        }
    }
}

/// Settings of the admin side (the `[admin]` section of the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// API tokens one account may hold, active and revoked, until they expire (seed 001's cap).
    pub max_tokens_per_account: u64,
    /// Lifetime of an API token when none is asked for, and the longest one may have.
    pub token_days_default: u64,
    pub token_days_max: u64,
    /// Lifetime of the session token an interactive login gets.
    pub session_token_minutes: u64,
    /// Where the first start writes the initial administrator's password; empty means
    /// `DATA_DIR/initial-admin-password`.
    pub initial_password_file: Option<PathBuf>,
    /// The key that signs tokens (created on first start); empty means `DATA_DIR/token.key`.
    /// Every node of a cluster needs the same one.
    pub token_key_file: Option<PathBuf>,
    /// Requests per second the admin API takes from one token, and from everyone together;
    /// beyond them it answers 503 (0: no limit).
    pub requests_per_second_per_token: u32,
    pub requests_per_second: u32,
    /// Largest update file an upload through the admin API may carry.
    pub max_upload_bytes: u64,
    /// Lifetime of the token an intake login gets.
    pub intake_token_minutes: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            max_tokens_per_account: 10,
            token_days_default: 90,
            token_days_max: 366,
            session_token_minutes: 15,
            initial_password_file: None,
            token_key_file: None,
            requests_per_second_per_token: 100,
            requests_per_second: 1000,
            max_upload_bytes: 1 << 30,
            intake_token_minutes: 60,
        }
    }
}

/// The time the domain's rules see: the system clock, which tests may move forward.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + time::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock forward (for tests of expiry).
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(
            i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// The admin domain over one store.
pub struct Domain {
    store: Arc<dyn Store>,
    sessions: Arc<dyn Sessions>,
    pub bus: Arc<bus::Bus>,
    pub throttle: throttle::LoginThrottle,
    tokens: tokens::TokenKeys,
    config: AdminConfig,
    clock: Clock,
    updates_root: PathBuf,
    update_hashes: Arc<queries::HashCache>,
    /// Keys the credentials of devices pre-registered with a password.
    device_secret: crate::auth::Secret,
    backend: backend::BackendConfig,
    /// This process among the nodes sharing the database (random at each start).
    node: String,
    live_consoles: backend::LiveConsoles,
}

impl Domain {
    pub fn new(
        store: Arc<dyn Store>,
        sessions: Arc<dyn Sessions>,
        throttle: throttle::ThrottlePolicy,
        tokens: tokens::TokenKeys,
        config: AdminConfig,
        updates_root: PathBuf,
        device_secret: crate::auth::Secret,
    ) -> Domain {
        Domain {
            bus: Arc::new(bus::Bus::new(store.clone())),
            throttle: throttle::LoginThrottle::new(store.clone(), throttle),
            store,
            sessions,
            tokens,
            config,
            clock: Clock::default(),
            updates_root,
            update_hashes: Default::default(),
            device_secret,
            backend: backend::BackendConfig::default(),
            node: uuid::Uuid::new_v4().to_string(),
            live_consoles: Default::default(),
        }
    }

    /// This domain with the given settings of product backend commands.
    pub fn with_backend(mut self, config: backend::BackendConfig) -> Domain {
        self.backend = config;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn config(&self) -> &AdminConfig {
        &self.config
    }
}
