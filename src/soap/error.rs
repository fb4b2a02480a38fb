//! Errors of the codec: what was wrong with a well-formed message, SOAP faults, client errors.
//!
//! These say what happened in the message; choosing a protocol error code for them is the
//! server's business, in one place outside this module.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Operation;

/// A well-formed request for a known operation whose content the protocol does not allow.
/// Field names are the wire names.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CodecError {
    #[error("missing field `{field}`")]
    MissingField { field: String },
    #[error("field `{field}` given more than once")]
    DuplicateField { field: String },
    #[error("bad value in `{field}`: expected {expected}")]
    BadValue { field: String, expected: String },
    #[error("element inside the text of `{field}`")]
    UnexpectedElement { field: String },
    #[error("parameter name `{name}` given more than once in one container")]
    DuplicateName { name: String },
    #[error("`{field}` has no xsi:type")]
    MissingType { field: String },
    #[error("`{field}` has unsupported xsi:type `{xsi_type}`")]
    UnknownType { field: String, xsi_type: String },
    #[error("nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("more than {max} entries")]
    TooManyEntries { max: usize },
    #[error("more than {max} events")]
    TooManyEvents { max: usize },
    #[error("`{field}` is longer than {max} bytes")]
    TooLarge { field: String, max: usize },
}

impl CodecError {
    /// The message broke a size, depth or count limit (as opposed to being malformed).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CodecError::TooDeep { .. }
                | CodecError::TooManyEntries { .. }
                | CodecError::TooManyEvents { .. }
                | CodecError::TooLarge { .. }
        )
    }
}

/// Input quoted in an error (a parameter name, a type) is cut to this many bytes: errors end
/// up in replies and logs, and the peer controls the text.
const MAX_QUOTE: usize = 100;

/// `s`, cut at a character boundary to at most [`MAX_QUOTE`] bytes.
pub(crate) fn quote(s: &str) -> String {
    let mut cut = s.len().min(MAX_QUOTE);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_owned()
}

/// `faultcode` of a SOAP 1.1 Fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultCode {
    /// The message could not be answered as an operation: the sender's fault.
    Client,
    /// The server could not process a valid message.
    Server,
}

/// A SOAP Fault: the reply (HTTP 500) when a message cannot be answered as an operation.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("SOAP fault ({code:?}): {reason}")]
pub struct Fault {
    pub code: FaultCode,
    pub reason: String,
}

/// Longest `faultstring` we produce: reasons may quote input (a tag name), which is not ours
/// to echo at length.
const MAX_REASON: usize = 200;

impl Fault {
    /// A `SOAP-ENV:Client` fault; the reason is cut to a sane length.
    pub fn client(reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        let mut cut = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        Fault {
            code: FaultCode::Client,
            reason,
        }
    }

    /// A `SOAP-ENV:Server` fault.
    pub fn server(reason: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Server,
            reason: reason.into(),
        }
    }
}

/// Why a response could not be turned into a [`super::Response`] (client side).
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientError {
    /// The server answered with a SOAP Fault.
    #[error("server fault: {fault}")]
    Fault { fault: Fault },
    /// Not a SOAP response we can read at all.
    #[error("malformed response: {reason}")]
    Malformed { reason: String },
    /// A response to a known operation whose content is wrong.
    #[error("invalid {op:?} response: {error}")]
    Invalid { op: Operation, error: CodecError },
}
