//! The seven responses: their values and their XML bodies (written by the server, read by
//! device clients).

use serde::{Deserialize, Serialize};

use super::fields::{
    nested, read_command, read_file_chunk, read_file_info, read_param_error, write_command,
    write_file_chunk, write_file_info, write_param_error,
};
use super::reader::{need, put, Reader, Res};
use super::types::{Command, FileChunk, FileInfo, ParamError};
use super::writer::Writer;
use super::Operation;

/// A response; `error` is the `oError` element, absent on success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Response {
    SessionBegin {
        session_id: String,
        protocol_version: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ParamError>,
    },
    Heartbeat {
        command: Command,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ParamError>,
    },
    PutResult {
        next_command: Command,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ParamError>,
    },
    PutEvents {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ParamError>,
    },
    GetFileInfo {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<FileInfo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ParamError>,
    },
    GetNextFileChunk {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chunk: Option<FileChunk>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ParamError>,
    },
    SessionEnd {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ParamError>,
    },
}

impl Response {
    /// The error form of `op`'s response: no command (`SRV_NO_COMMANDS`), no data, an empty
    /// session id with version 0 for `SessionBegin`, a zero `info` for `klft-GetFileInfo` (which
    /// strict clients require), and `e` as `oError`.
    pub fn error_reply(op: Operation, e: ParamError) -> Response {
        let error = Some(e);
        match op {
            Operation::SessionBegin => Response::SessionBegin {
                session_id: String::new(),
                protocol_version: 0,
                error,
            },
            Operation::Heartbeat => Response::Heartbeat {
                command: Command::bare(0),
                error,
            },
            Operation::PutResult => Response::PutResult {
                next_command: Command::bare(0),
                error,
            },
            Operation::PutEvents => Response::PutEvents { error },
            Operation::GetFileInfo => Response::GetFileInfo {
                info: Some(FileInfo::zero()),
                error,
            },
            Operation::GetNextFileChunk => Response::GetNextFileChunk { chunk: None, error },
            Operation::SessionEnd => Response::SessionEnd { error },
        }
    }

    pub fn operation(&self) -> Operation {
        match self {
            Response::SessionBegin { .. } => Operation::SessionBegin,
            Response::Heartbeat { .. } => Operation::Heartbeat,
            Response::PutResult { .. } => Operation::PutResult,
            Response::PutEvents { .. } => Operation::PutEvents,
            Response::GetFileInfo { .. } => Operation::GetFileInfo,
            Response::GetNextFileChunk { .. } => Operation::GetNextFileChunk,
            Response::SessionEnd { .. } => Operation::SessionEnd,
        }
    }

    /// The `oError` of the response, if any.
    pub fn error(&self) -> Option<&ParamError> {
        match self {
            Response::SessionBegin { error, .. }
            | Response::Heartbeat { error, .. }
            | Response::PutResult { error, .. }
            | Response::PutEvents { error }
            | Response::GetFileInfo { error, .. }
            | Response::GetNextFileChunk { error, .. }
            | Response::SessionEnd { error } => error.as_ref(),
        }
    }
}

/// Reads the children of the response element. Lenient on what an error reply may leave out.
pub(crate) fn read(r: &mut Reader<'_>, op: Operation) -> Res<Response> {
    let (mut error, mut session, mut version) = (None, None, None);
    let (mut command, mut info, mut chunk) = (None, None, None);
    while let Some(c) = r.next_child()? {
        match (op, c.local()) {
            (_, "oError") => {
                let v = nested(r, &c, read_param_error)?;
                put(&mut error, v, "oError")?;
            }
            (Operation::SessionBegin, "szSessionId") => {
                put(&mut session, r.string(&c, "szSessionId")?, "szSessionId")?
            }
            (Operation::SessionBegin, "nProtocolVersion") => put(
                &mut version,
                r.int(&c, "nProtocolVersion")?,
                "nProtocolVersion",
            )?,
            (Operation::Heartbeat, "oCommand") | (Operation::PutResult, "oNextCommand") => {
                let v = nested(r, &c, read_command)?;
                put(&mut command, v, "command")?;
            }
            (Operation::GetFileInfo, "info") => {
                let v = nested(r, &c, read_file_info)?;
                put(&mut info, v, "info")?;
            }
            (Operation::GetNextFileChunk, "chunk") => {
                let v = nested(r, &c, read_file_chunk)?;
                put(&mut chunk, v, "chunk")?;
            }
            _ => r.skip(&c)?,
        }
    }
    // An error reply may come without a command; the device then has nothing to do.
    let has_error = error.is_some();
    let command = |name: &str| match command {
        Some(c) => Ok(c),
        None if has_error => Ok(Command::bare(0)),
        None => need(None, name),
    };
    Ok(match op {
        Operation::SessionBegin => Response::SessionBegin {
            session_id: session.unwrap_or_default(),
            protocol_version: version.unwrap_or_default(),
            error,
        },
        Operation::Heartbeat => Response::Heartbeat {
            command: command("oCommand")?,
            error,
        },
        Operation::PutResult => Response::PutResult {
            next_command: command("oNextCommand")?,
            error,
        },
        Operation::PutEvents => Response::PutEvents { error },
        Operation::GetFileInfo => Response::GetFileInfo { info, error },
        Operation::GetNextFileChunk => Response::GetNextFileChunk { chunk, error },
        Operation::SessionEnd => Response::SessionEnd { error },
    })
}

/// Writes the children of the response element.
pub(crate) fn write(w: &mut Writer, resp: &Response) {
    match resp {
        Response::SessionBegin {
            session_id,
            protocol_version,
            ..
        } => {
            w.string("szSessionId", session_id);
            w.number("nProtocolVersion", protocol_version);
        }
        Response::Heartbeat { command, .. } => write_command(w, "oCommand", command),
        Response::PutResult { next_command, .. } => write_command(w, "oNextCommand", next_command),
        Response::GetFileInfo { info, .. } => {
            if let Some(info) = info {
                write_file_info(w, "info", info);
            }
        }
        Response::GetNextFileChunk { chunk, .. } => {
            if let Some(chunk) = chunk {
                write_file_chunk(w, "chunk", chunk);
            }
        }
        Response::PutEvents { .. } | Response::SessionEnd { .. } => {}
    }
    if let Some(e) = resp.error() {
        write_param_error(w, "oError", e);
    }
}
