//! SessionBegin (authentication, enrolment, throttling) and SessionEnd.

use std::net::SocketAddr;
use std::time::Instant;

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{DeviceService, EnrolmentMode};
use crate::error::DeviceError;
use crate::sessions::Session;
use crate::soap::{Response, PROTOCOL_VERSION};
use crate::store::Seen;

/// DeviceId and Password: non-empty printable ASCII, at most 64 characters (seed section 3.1).
fn valid_credential_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

impl DeviceService {
    pub(super) async fn session_begin(
        &self,
        device_id: &str,
        password: &str,
        protocol_version: i32,
        peer: SocketAddr,
        now: OffsetDateTime,
    ) -> Result<Response, DeviceError> {
        if !valid_credential_text(device_id) {
            return Err(DeviceError::BadParameter(
                "szDeviceId must be 1 to 64 printable ASCII characters".into(),
            ));
        }
        if !valid_credential_text(password) {
            return Err(DeviceError::BadParameter(
                "szPassword must be 1 to 64 printable ASCII characters".into(),
            ));
        }
        if protocol_version < PROTOCOL_VERSION {
            return Err(DeviceError::BadParameter(format!(
                "protocol version {protocol_version:#x} is not supported; this server speaks {PROTOCOL_VERSION:#x}"
            )));
        }
        let ip = peer.ip();
        let clock = Instant::now();
        if let Some(wait) = self.throttle.locked(device_id, ip, clock) {
            warn!(device_id, %ip, "login throttled");
            return Err(DeviceError::Unavailable {
                public: format!(
                    "too many failed logins; try again in {} seconds",
                    wait.as_secs().max(1)
                ),
                internal: format!("login throttled for {device_id} from {ip}"),
            });
        }
        let seen = Seen {
            at: now,
            address: ip.to_string(),
        };
        let device = match self.store.device_login(device_id).await? {
            Some(login) if login.blocked => {
                warn!(device_id, %ip, "blocked device refused");
                return Err(DeviceError::AccessDenied("the device is blocked".into()));
            }
            Some(login) => match login.credential {
                Some(credential) => {
                    if !self.secret.verify(&credential, password) {
                        self.throttle.record_failure(device_id, ip, clock);
                        warn!(device_id, %ip, "wrong device password");
                        return Err(DeviceError::AccessDenied("wrong device password".into()));
                    }
                    login.id
                }
                // Pre-registered or reset by an admin: this login sets the password.
                None => self.enrol(device_id, password, &seen).await?,
            },
            None if self.config.enrolment == EnrolmentMode::Closed => {
                self.throttle.record_failure(device_id, ip, clock);
                warn!(device_id, %ip, "unregistered device refused (closed enrolment)");
                return Err(DeviceError::AccessDenied(
                    "the device is not registered on this server".into(),
                ));
            }
            None => self.enrol(device_id, password, &seen).await?,
        };
        self.throttle.record_success(device_id);
        let session = Session::new(device, device_id, now);
        let session_id = session.id.clone();
        self.sessions.insert(session).await?;
        Ok(Response::SessionBegin {
            session_id,
            protocol_version: PROTOCOL_VERSION,
            error: None,
        })
    }

    /// Records the password of a first contact. If another login enrolled the same id at the same
    /// moment, this one must match the password that won.
    async fn enrol(
        &self,
        device_id: &str,
        password: &str,
        seen: &Seen,
    ) -> Result<i64, DeviceError> {
        let credential = self.secret.hash(password);
        if let Some(id) = self
            .store
            .enrol_device(device_id, &credential, seen)
            .await?
        {
            info!(device_id, address = %seen.address, "device enrolled");
            return Ok(id);
        }
        match self.store.device_login(device_id).await? {
            Some(login)
                if !login.blocked
                    && login
                        .credential
                        .as_deref()
                        .is_some_and(|c| self.secret.verify(c, password)) =>
            {
                Ok(login.id)
            }
            _ => Err(DeviceError::AccessDenied("wrong device password".into())),
        }
    }

    pub(super) async fn session_end(&self, session_id: &str) -> Result<Response, DeviceError> {
        if self.sessions.remove(session_id).await? {
            Ok(Response::SessionEnd { error: None })
        } else {
            Err(DeviceError::unknown_session())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_credential_text;

    #[test]
    fn credential_text_rules() {
        assert!(valid_credential_text("IMEI-3520990017"));
        assert!(!valid_credential_text(""));
        assert!(!valid_credential_text(&"x".repeat(65)));
        assert!(valid_credential_text(&"x".repeat(64)));
        assert!(!valid_credential_text("tab\there"));
        assert!(!valid_credential_text("кириллица"));
    }
}
