//! Device-side errors and the one place where they become protocol errors (`param-error` codes).
//!
//! Codes follow SPEC section 7. Messages are for a person reading device logs: they explain, and never
//! carry SQL, server paths or other internals (those go to the server log only).

use crate::soap::{CodecError, Operation, ParamError};
use crate::store::StoreError;
use crate::updates::UpdatesError;

pub const ACCESS_DENIED: i32 = 1184;
pub const NOT_FOUND: i32 = 1186;
pub const BAD_PARAMETER: i32 = 1187;
pub const BAD_FORMAT: i32 = 1192;
pub const NOT_PERMITTED: i32 = 1193;
pub const UNAVAILABLE: i32 = 1195;
pub const UNEXPECTED_RESULT_CODE: i32 = 1568;
pub const INVALID_RESULT_DATA: i32 = 1569;
pub const WRONG_RESULT_TYPE: i32 = 1570;

/// The module name devices see in `param-error` (the original server's name for itself).
pub const MODULE: &str = "KLSRV";

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadParameter(String),
    #[error("{0}")]
    BadFormat(String),
    #[error("{0}")]
    NotPermitted(String),
    /// Try again later: a limit was reached (throttled logins, too many sessions or enrolments).
    /// Expected under abuse or load, so not an error of the server's.
    #[error("{0}")]
    TryLater(String),
    /// Try again later: the server failed. The inner text is logged, not sent.
    #[error("{public}")]
    Unavailable { public: String, internal: String },
    #[error("unexpected response code {got}: the server is waiting for the result of command {expected}")]
    UnexpectedResultCode { expected: i32, got: i32 },
    #[error("{0}")]
    InvalidResultData(String),
    #[error("wrong data type for the result of command {command}: expected {expected}")]
    WrongResultType {
        command: i32,
        expected: &'static str,
    },
}

impl DeviceError {
    pub fn unknown_session() -> DeviceError {
        DeviceError::NotFound("unknown or expired session".into())
    }

    pub fn code(&self) -> i32 {
        match self {
            DeviceError::AccessDenied(_) => ACCESS_DENIED,
            DeviceError::NotFound(_) => NOT_FOUND,
            DeviceError::BadParameter(_) => BAD_PARAMETER,
            DeviceError::BadFormat(_) => BAD_FORMAT,
            DeviceError::NotPermitted(_) => NOT_PERMITTED,
            DeviceError::TryLater(_) | DeviceError::Unavailable { .. } => UNAVAILABLE,
            DeviceError::UnexpectedResultCode { .. } => UNEXPECTED_RESULT_CODE,
            DeviceError::InvalidResultData(_) => INVALID_RESULT_DATA,
            DeviceError::WrongResultType { .. } => WRONG_RESULT_TYPE,
        }
    }

    /// The `param-error` sent to the device.
    pub fn to_param_error(&self) -> ParamError {
        ParamError::new(self.code(), MODULE, self.to_string())
    }

    /// A request that could be parsed as `op` but whose content is wrong.
    pub fn from_codec(op: Operation, e: &CodecError) -> DeviceError {
        if op == Operation::PutResult {
            return DeviceError::InvalidResultData(format!("invalid result data: {e}"));
        }
        if e.is_limit() {
            DeviceError::BadParameter(e.to_string())
        } else {
            DeviceError::BadFormat(e.to_string())
        }
    }
}

impl From<StoreError> for DeviceError {
    fn from(e: StoreError) -> DeviceError {
        DeviceError::Unavailable {
            public: "the server cannot complete the request now; try again later".into(),
            internal: e.to_string(),
        }
    }
}

impl From<crate::domain::DomainError> for DeviceError {
    fn from(e: crate::domain::DomainError) -> DeviceError {
        match e {
            crate::domain::DomainError::TryLater { .. } => DeviceError::TryLater(e.to_string()),
            e => DeviceError::Unavailable {
                public: "the server cannot complete the request now; try again later".into(),
                internal: e.to_string(),
            },
        }
    }
}

impl From<crate::sessions::SessionError> for DeviceError {
    fn from(e: crate::sessions::SessionError) -> DeviceError {
        match e {
            crate::sessions::SessionError::Full => {
                DeviceError::TryLater("the server holds too many sessions; try again later".into())
            }
            e => DeviceError::Unavailable {
                public: "the server cannot complete the request now; try again later".into(),
                internal: e.to_string(),
            },
        }
    }
}

impl From<UpdatesError> for DeviceError {
    fn from(e: UpdatesError) -> DeviceError {
        match e {
            UpdatesError::InvalidName(why) => {
                DeviceError::BadParameter(format!("invalid file name: {why}"))
            }
            UpdatesError::Refused(why) => DeviceError::NotPermitted(format!("file refused: {why}")),
            UpdatesError::NotFound => DeviceError::NotFound("file not found".into()),
            UpdatesError::IsDirectory => {
                DeviceError::BadParameter("the name is a directory, not a file".into())
            }
            UpdatesError::Changed => DeviceError::Unavailable {
                public: "the file changed during the download; download it again from position 0"
                    .into(),
                internal: "update file changed during a download".into(),
            },
            UpdatesError::Io(e) => DeviceError::Unavailable {
                public: "the file cannot be read now; try again later".into(),
                internal: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internals_stay_out_of_device_messages() {
        let e = DeviceError::from(StoreError::Internal("SELECT secret FROM /var/lib/x".into()));
        let p = e.to_param_error();
        assert_eq!(p.code, UNAVAILABLE);
        assert!(!p.message.contains("SELECT") && !p.message.contains("/var"));
        let e = DeviceError::from(UpdatesError::Io(std::io::Error::other(
            "/srv/updates/x: EIO",
        )));
        assert!(!e.to_param_error().message.contains("/srv"));
        assert_eq!(DeviceError::unknown_session().code(), NOT_FOUND);
        assert_eq!(
            DeviceError::UnexpectedResultCode {
                expected: 5,
                got: 1
            }
            .code(),
            1568
        );
    }
}
