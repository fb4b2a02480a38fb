//! SessionBegin (authentication, enrolment, throttling) and SessionEnd.

use std::net::{IpAddr, SocketAddr};

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{DeviceService, EnrolmentMode};
use crate::domain::throttle::{Attempt, LoginKind};
use crate::error::DeviceError;
use crate::sessions::Session;
use crate::soap::{Response, PROTOCOL_VERSION};
use crate::store::Seen;

/// What every refused login is told: an unknown device id (in closed enrolment) and a wrong password
/// look the same.
const WRONG_CREDENTIALS: &str = "unknown device or wrong password";

/// Counts a failed login and gives the answer every failure gets, whatever its cause, so that the
/// answer does not tell an unknown id from a wrong password.
async fn login_failed(attempt: Attempt<'_>, device_id: &str, ip: IpAddr, why: &str) -> DeviceError {
    warn!(device_id, %ip, "{why}");
    if let Err(e) = attempt.failed().await {
        return e.into();
    }
    DeviceError::AccessDenied(WRONG_CREDENTIALS.into())
}

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
        let attempt = self
            .domain
            .throttle
            .begin(LoginKind::Device, device_id, Some(ip))
            .await?;
        let seen = Seen {
            at: now,
            address: ip.to_string(),
        };
        let device = match self.store.device_login(device_id).await? {
            Some(login) => match login.credential {
                Some(credential) => {
                    if !self.secret.verify(&credential, password) {
                        return Err(
                            login_failed(attempt, device_id, ip, "wrong device password").await,
                        );
                    }
                    // Only the rightful device learns that it is blocked.
                    if login.blocked {
                        warn!(device_id, %ip, "blocked device refused");
                        return Err(DeviceError::AccessDenied("the device is blocked".into()));
                    }
                    login.id
                }
                // Pre-registered or reset by an admin: this login sets the password.
                // Blocked before it ever logged in: there is no password to prove ownership with.
                None if login.blocked => {
                    return Err(
                        login_failed(attempt, device_id, ip, "blocked device refused").await,
                    );
                }
                None => self.enrol(device_id, password, &seen).await?,
            },
            None if self.config.enrolment == EnrolmentMode::Closed => {
                // As long as a wrong password takes: the answer must not tell which ids exist.
                let _ = self
                    .secret
                    .verify(&[0; crate::auth::CREDENTIAL_LEN], password);
                return Err(login_failed(
                    attempt,
                    device_id,
                    ip,
                    "unregistered device refused (closed enrolment)",
                )
                .await);
            }
            None => {
                if let Err(wait) = self.enrolments.check(ip) {
                    info!(%ip, "enrolment refused: too many new devices from this address");
                    return Err(DeviceError::TryLater(format!(
                        "too many new devices from this address; try again in {} seconds",
                        wait.as_secs().max(1)
                    )));
                }
                self.enrol(device_id, password, &seen).await?
            }
        };
        attempt.succeeded().await?;
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
            _ => Err(DeviceError::AccessDenied(WRONG_CREDENTIALS.into())),
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
