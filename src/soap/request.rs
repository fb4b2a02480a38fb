//! The seven requests: their values and their XML bodies (read by the server, written by
//! device clients).

use serde::{Deserialize, Serialize};

use super::fields::{
    nested, read_command, read_events, read_sync_info, write_command, write_events, write_sync_info,
};
use super::reader::{need, put, Reader, Res};
use super::types::{Command, EventInfo, SyncInfo};
use super::writer::Writer;
use super::Operation;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Request {
    SessionBegin {
        device_id: String,
        password: String,
        protocol_version: i32,
    },
    Heartbeat {
        session_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sync: Option<SyncInfo>,
    },
    PutResult {
        session_id: String,
        result: Command,
    },
    PutEvents {
        session_id: String,
        events: Vec<EventInfo>,
    },
    GetFileInfo {
        session_id: String,
        file_name: String,
    },
    GetNextFileChunk {
        session_id: String,
        file_name: String,
        start_pos: u64,
        needed_size: u64,
    },
    SessionEnd {
        session_id: String,
    },
}

impl Request {
    pub fn operation(&self) -> Operation {
        match self {
            Request::SessionBegin { .. } => Operation::SessionBegin,
            Request::Heartbeat { .. } => Operation::Heartbeat,
            Request::PutResult { .. } => Operation::PutResult,
            Request::PutEvents { .. } => Operation::PutEvents,
            Request::GetFileInfo { .. } => Operation::GetFileInfo,
            Request::GetNextFileChunk { .. } => Operation::GetNextFileChunk,
            Request::SessionEnd { .. } => Operation::SessionEnd,
        }
    }

    /// The session the request belongs to; `None` for `SessionBegin`.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Request::SessionBegin { .. } => None,
            Request::Heartbeat { session_id, .. }
            | Request::PutResult { session_id, .. }
            | Request::PutEvents { session_id, .. }
            | Request::GetFileInfo { session_id, .. }
            | Request::GetNextFileChunk { session_id, .. }
            | Request::SessionEnd { session_id } => Some(session_id),
        }
    }
}

/// Reads the children of the operation element.
pub(crate) fn read(r: &mut Reader<'_>, op: Operation) -> Res<Request> {
    let mut session = None;
    let (mut device, mut password, mut version) = (None, None, None);
    let (mut sync, mut result, mut events) = (None, None, None);
    let (mut file, mut start, mut size) = (None, None, None);
    while let Some(c) = r.next_child()? {
        match (op, c.local()) {
            (Operation::SessionBegin, "szDeviceId") => {
                put(&mut device, r.string(&c, "szDeviceId")?, "szDeviceId")?
            }
            (Operation::SessionBegin, "szPassword") => {
                put(&mut password, r.string(&c, "szPassword")?, "szPassword")?
            }
            (Operation::SessionBegin, "nProtocolVersion") => put(
                &mut version,
                r.int(&c, "nProtocolVersion")?,
                "nProtocolVersion",
            )?,
            (Operation::SessionBegin, _) => r.skip(&c)?,
            (_, "szSessionId") => put(&mut session, r.string(&c, "szSessionId")?, "szSessionId")?,
            (Operation::Heartbeat, "oMaySynchronize") => {
                let v = nested(r, &c, read_sync_info)?;
                put(&mut sync, v, "oMaySynchronize")?;
            }
            (Operation::PutResult, "result") => {
                let v = nested(r, &c, read_command)?;
                put(&mut result, v, "result")?;
            }
            (Operation::PutEvents, "oEventsInfoArray") => {
                let v = nested(r, &c, read_events)?;
                put(&mut events, v, "oEventsInfoArray")?;
            }
            (Operation::GetFileInfo | Operation::GetNextFileChunk, "fileName") => {
                put(&mut file, r.string(&c, "fileName")?, "fileName")?
            }
            (Operation::GetNextFileChunk, "startFilePos") => put(
                &mut start,
                r.unsigned_long(&c, "startFilePos")?,
                "startFilePos",
            )?,
            (Operation::GetNextFileChunk, "neededSize") => {
                put(&mut size, r.unsigned_long(&c, "neededSize")?, "neededSize")?
            }
            _ => r.skip(&c)?,
        }
    }
    let session_id = || need(session, "szSessionId");
    Ok(match op {
        Operation::SessionBegin => Request::SessionBegin {
            device_id: need(device, "szDeviceId")?,
            password: need(password, "szPassword")?,
            protocol_version: need(version, "nProtocolVersion")?,
        },
        Operation::Heartbeat => Request::Heartbeat {
            session_id: session_id()?,
            sync,
        },
        Operation::PutResult => Request::PutResult {
            session_id: session_id()?,
            result: need(result, "result")?,
        },
        Operation::PutEvents => Request::PutEvents {
            session_id: session_id()?,
            events: events.unwrap_or_default(),
        },
        Operation::GetFileInfo => Request::GetFileInfo {
            session_id: session_id()?,
            file_name: need(file, "fileName")?,
        },
        Operation::GetNextFileChunk => Request::GetNextFileChunk {
            session_id: session_id()?,
            file_name: need(file, "fileName")?,
            start_pos: need(start, "startFilePos")?,
            needed_size: need(size, "neededSize")?,
        },
        Operation::SessionEnd => Request::SessionEnd {
            session_id: session_id()?,
        },
    })
}

/// Writes the children of the operation element.
pub(crate) fn write(w: &mut Writer, req: &Request) {
    match req {
        Request::SessionBegin {
            device_id,
            password,
            protocol_version,
        } => {
            w.string("szDeviceId", device_id);
            w.string("szPassword", password);
            w.number("nProtocolVersion", protocol_version);
        }
        Request::Heartbeat { session_id, sync } => {
            w.string("szSessionId", session_id);
            if let Some(s) = sync {
                write_sync_info(w, "oMaySynchronize", s);
            }
        }
        Request::PutResult { session_id, result } => {
            w.string("szSessionId", session_id);
            write_command(w, "result", result);
        }
        Request::PutEvents { session_id, events } => {
            w.string("szSessionId", session_id);
            write_events(w, "oEventsInfoArray", events);
        }
        Request::GetFileInfo {
            session_id,
            file_name,
        } => {
            w.string("szSessionId", session_id);
            w.string("fileName", file_name);
        }
        Request::GetNextFileChunk {
            session_id,
            file_name,
            start_pos,
            needed_size,
        } => {
            w.string("szSessionId", session_id);
            w.string("fileName", file_name);
            w.number("startFilePos", start_pos);
            w.number("neededSize", needed_size);
        }
        Request::SessionEnd { session_id } => w.string("szSessionId", session_id),
    }
}
