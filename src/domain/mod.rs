//! Admin operations: the rules every admin surface shares, on top of the store and the sessions.
//!
//! A change that affects devices' live sessions is made here, not in a backend: blocking or
//! resetting a device also ends its sessions, wherever they are kept.

use std::sync::Arc;

use crate::sessions::Sessions;
use crate::store::{Store, StoreError};

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sessions: {0}")]
    Sessions(#[from] crate::sessions::SessionError),
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

pub struct Domain {
    store: Arc<dyn Store>,
    sessions: Arc<dyn Sessions>,
}

impl Domain {
    pub fn new(store: Arc<dyn Store>, sessions: Arc<dyn Sessions>) -> Domain {
        Domain { store, sessions }
    }

    /// Blocks or unblocks a device; a blocked device's sessions end at once. Returns whether the
    /// device exists.
    pub async fn set_device_blocked(
        &self,
        device_id: &str,
        blocked: bool,
        actor: &str,
    ) -> Result<bool> {
        if !self
            .store
            .set_device_blocked(device_id, blocked, actor)
            .await?
        {
            return Ok(false);
        }
        if blocked {
            self.end_sessions(device_id).await?;
        }
        Ok(true)
    }

    /// Forgets a device's password so that it enrols again; its sessions end at once.
    pub async fn reset_device(&self, device_id: &str, actor: &str) -> Result<bool> {
        if !self.store.reset_device(device_id, actor).await? {
            return Ok(false);
        }
        self.end_sessions(device_id).await?;
        Ok(true)
    }

    async fn end_sessions(&self, device_id: &str) -> Result<()> {
        if let Some(login) = self.store.device_login(device_id).await? {
            let ended = self.sessions.end_device(login.id).await?;
            tracing::info!(device_id, ended, "device sessions ended");
        }
        Ok(())
    }
}
