//! One device session over the wire: SessionBegin, the Heartbeat/PutResult sync loop, events,
//! an optional update download, SessionEnd — with every outcome written to the session's log.

use std::time::Instant;

use rand::Rng;
use time::OffsetDateTime;
use tracing::debug;

use super::client::{CallError, Caller};
use super::device::VirtualDevice;
use super::stats::{Metric, SessionLog};
use crate::soap::{CmdData, Operation, Request, Response, PROTOCOL_VERSION};
use crate::sync::NO_COMMANDS;

/// More commands than the six sync steps in one session means the server is looping.
pub const MAX_COMMANDS: usize = 16;
/// Events per `PutEvents` call in ordinary sessions (the server's default per-call limit).
pub const EVENTS_PER_CALL: u32 = 100;
/// Events per `PutEvents` call in a burst.
pub const BURST_EVENTS_PER_CALL: u32 = 10;
/// A device with a long backlog sends at most this many `PutEvents` calls per session.
pub const MAX_EVENT_CALLS: u32 = 20;

/// What sessions do, as shares and sizes; each session draws its own [`Plan`] from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub events_per_session: u32,
    /// Share of sessions that send a burst instead: `burst_calls` calls of 10 events.
    pub event_burst: f64,
    pub burst_calls: u32,
    /// Share of sessions in which the device's settings and state change first.
    pub changing_share: f64,
    /// Update file to download in `download_share` of sessions.
    pub download: Option<String>,
    pub download_share: f64,
    pub chunk_size: u64,
    /// First contact only: sync, nothing else.
    pub enrol_only: bool,
}

/// What one session will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub change: bool,
    pub new_events: u32,
    pub events_per_call: u32,
    pub download: bool,
}

impl Scenario {
    pub fn plan(&self, rng: &mut impl Rng) -> Plan {
        if self.enrol_only {
            return Plan {
                change: false,
                new_events: 0,
                events_per_call: EVENTS_PER_CALL,
                download: false,
            };
        }
        let burst = self.event_burst > 0.0 && rng.random_bool(self.event_burst);
        Plan {
            change: self.changing_share > 0.0 && rng.random_bool(self.changing_share),
            new_events: if burst {
                self.burst_calls * BURST_EVENTS_PER_CALL
            } else {
                self.events_per_session
            },
            events_per_call: if burst {
                BURST_EVENTS_PER_CALL
            } else {
                EVENTS_PER_CALL
            },
            download: self.download.is_some()
                && self.download_share > 0.0
                && rng.random_bool(self.download_share),
        }
    }
}

/// A failure that ends the session: nothing more can be said on this connection.
struct Abort {
    op: Operation,
    error: CallError,
}

/// Runs one session of `device`; everything observed goes to `log`, and `device` keeps what it
/// learned (hashes of pushed content, acknowledged events) even if the session fails later.
pub async fn run_session(
    caller: &mut Caller<'_>,
    device: &mut VirtualDevice,
    plan: &Plan,
    scenario: &Scenario,
    log: &mut SessionLog,
) {
    let started = Instant::now();
    if let Err(Abort { op, error }) = session(caller, device, plan, scenario, log).await {
        debug!(device = device.index, op = op.wire_name(), %error, "session aborted");
        log.error(op.wire_name(), error.kind());
    }
    log.record(Metric::Session, started.elapsed());
}

async fn call(
    caller: &mut Caller<'_>,
    req: Request,
    log: &mut SessionLog,
) -> Result<Response, Abort> {
    let op = req.operation();
    caller
        .call(&req, log)
        .await
        .map_err(|error| Abort { op, error })
}

fn o_error(log: &mut SessionLog, op: Operation, code: i32, message: &str) {
    debug!(op = op.wire_name(), code, message, "oError");
    log.error(op.wire_name(), format_args!("oError {code}"));
}

async fn session(
    caller: &mut Caller<'_>,
    device: &mut VirtualDevice,
    plan: &Plan,
    scenario: &Scenario,
    log: &mut SessionLog,
) -> Result<(), Abort> {
    if plan.change {
        device.change_locally();
    }
    let backlog_end = device.pending_events().end;
    if plan.new_events > 0 {
        device.raise_events(plan.new_events, OffsetDateTime::now_utc());
    }
    let begin = Request::SessionBegin {
        device_id: device.device_id(),
        password: device.password(),
        protocol_version: PROTOCOL_VERSION,
    };
    let session_id = match call(caller, begin, log).await? {
        Response::SessionBegin { error: Some(e), .. } => {
            o_error(log, Operation::SessionBegin, e.code, &e.message);
            return Ok(());
        }
        Response::SessionBegin { session_id, .. } => session_id,
        _ => unreachable!("the caller checks the response operation"),
    };
    log.begun = true;
    let record = &mut device.stored.record;
    record.enrolled = true;
    record.sessions = record.sessions.wrapping_add(1);

    sync(caller, device, &session_id, log).await?;
    send_events(caller, device, &session_id, plan, backlog_end, log).await?;
    if plan.download {
        if let Some(file) = &scenario.download {
            download(caller, &session_id, file, scenario.chunk_size, log).await?;
        }
    }
    let end = Request::SessionEnd {
        session_id: session_id.clone(),
    };
    if let Some(e) = call(caller, end, log).await?.error() {
        o_error(log, Operation::SessionEnd, e.code, &e.message);
    }
    Ok(())
}

/// Heartbeat with the device's hashes, then answer each command until `SRV_NO_COMMANDS`.
async fn sync(
    caller: &mut Caller<'_>,
    device: &mut VirtualDevice,
    session_id: &str,
    log: &mut SessionLog,
) -> Result<(), Abort> {
    let heartbeat = Request::Heartbeat {
        session_id: session_id.to_string(),
        sync: Some(device.sync_info()),
    };
    let mut command = match call(caller, heartbeat, log).await? {
        Response::Heartbeat { error: Some(e), .. } => {
            o_error(log, Operation::Heartbeat, e.code, &e.message);
            return Ok(());
        }
        Response::Heartbeat { command, .. } => command,
        _ => unreachable!("the caller checks the response operation"),
    };
    let mut answered = 0;
    loop {
        log.commands.push(command.code);
        if command.code == NO_COMMANDS {
            return Ok(());
        }
        if answered == MAX_COMMANDS {
            log.error(Operation::PutResult.wire_name(), "endless command loop");
            return Ok(());
        }
        answered += 1;
        let result = device.answer(&command);
        if let Some(CmdData::Error(e)) = &result.data {
            // The device could not carry the command out: the server sent something malformed.
            debug!(code = command.code, message = %e.message, "command refused");
            log.error(
                Operation::PutResult.wire_name(),
                format_args!("refused command {}", command.code),
            );
        }
        let put = Request::PutResult {
            session_id: session_id.to_string(),
            result,
        };
        command = match call(caller, put, log).await? {
            Response::PutResult { error: Some(e), .. } => {
                o_error(log, Operation::PutResult, e.code, &e.message);
                return Ok(());
            }
            Response::PutResult { next_command, .. } => next_command,
            _ => unreachable!("the caller checks the response operation"),
        };
    }
}

/// Sends the pending events, oldest first; those below `backlog_end` were raised in earlier sessions.
async fn send_events(
    caller: &mut Caller<'_>,
    device: &mut VirtualDevice,
    session_id: &str,
    plan: &Plan,
    backlog_end: u32,
    log: &mut SessionLog,
) -> Result<(), Abort> {
    for _ in 0..MAX_EVENT_CALLS {
        let pending = device.pending_events();
        if pending.is_empty() {
            break;
        }
        let n = pending.len().min(plan.events_per_call as usize) as u32;
        let batch = pending.start..pending.start + n;
        let events = batch.clone().map(|seq| device.event(seq)).collect();
        log.events_sent += u64::from(n);
        log.events_resent += u64::from(backlog_end.saturating_sub(batch.start).min(n));
        let put = Request::PutEvents {
            session_id: session_id.to_string(),
            events,
        };
        if let Some(e) = call(caller, put, log).await?.error() {
            // Kept for the next session, which resends them with the same ids.
            o_error(log, Operation::PutEvents, e.code, &e.message);
            break;
        }
        device.acknowledge(n);
        log.events_acked += u64::from(n);
    }
    Ok(())
}

/// Downloads `file` in chunks, checking every chunk's position and CRC and the total size.
async fn download(
    caller: &mut Caller<'_>,
    session_id: &str,
    file: &str,
    chunk_size: u64,
    log: &mut SessionLog,
) -> Result<(), Abort> {
    const INFO: Operation = Operation::GetFileInfo;
    const CHUNK: Operation = Operation::GetNextFileChunk;
    let req = Request::GetFileInfo {
        session_id: session_id.to_string(),
        file_name: file.to_string(),
    };
    let info = match call(caller, req, log).await? {
        Response::GetFileInfo { error: Some(e), .. } => {
            o_error(log, INFO, e.code, &e.message);
            return Ok(());
        }
        Response::GetFileInfo {
            info: Some(info), ..
        } => info,
        Response::GetFileInfo { info: None, .. } => {
            log.error(INFO.wire_name(), "no file info");
            return Ok(());
        }
        _ => unreachable!("the caller checks the response operation"),
    };
    if info.is_dir {
        log.error(INFO.wire_name(), "a directory");
        return Ok(());
    }
    let size = info.full_file_size;
    let mut pos = 0u64;
    while pos < size {
        let req = Request::GetNextFileChunk {
            session_id: session_id.to_string(),
            file_name: file.to_string(),
            start_pos: pos,
            needed_size: chunk_size,
        };
        let chunk = match call(caller, req, log).await? {
            Response::GetNextFileChunk { error: Some(e), .. } => {
                o_error(log, CHUNK, e.code, &e.message);
                return Ok(());
            }
            Response::GetNextFileChunk { chunk: Some(c), .. } => c,
            Response::GetNextFileChunk { chunk: None, .. } => {
                log.error(CHUNK.wire_name(), "no chunk");
                return Ok(());
            }
            _ => unreachable!("the caller checks the response operation"),
        };
        let len = chunk.buff.len() as u64;
        let problem = if chunk.start_pos_in_file != pos {
            Some("wrong chunk position")
        } else if crc32fast::hash(&chunk.buff) != chunk.crc {
            Some("CRC mismatch")
        } else if chunk.full_file_size != size {
            Some("file size changed")
        } else if len == 0 {
            Some("file shorter than announced")
        } else if pos + len > size {
            Some("file longer than announced")
        } else {
            None
        };
        if let Some(problem) = problem {
            log.error(CHUNK.wire_name(), problem);
            return Ok(());
        }
        log.bytes_downloaded += len;
        pos += len;
    }
    log.downloads_ok += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn scenario() -> Scenario {
        Scenario {
            events_per_session: 3,
            event_burst: 0.25,
            burst_calls: 4,
            changing_share: 0.5,
            download: Some("upd/base.bin".into()),
            download_share: 0.1,
            chunk_size: 32768,
            enrol_only: false,
        }
    }

    #[test]
    fn plans_follow_the_shares() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = scenario();
        let plans: Vec<Plan> = (0..10_000).map(|_| s.plan(&mut rng)).collect();
        let share = |f: &dyn Fn(&Plan) -> bool| plans.iter().filter(|p| f(p)).count() as f64 / 1e4;
        let bursts = share(&|p| p.events_per_call == BURST_EVENTS_PER_CALL);
        assert!((0.22..0.28).contains(&bursts), "{bursts}");
        assert!((0.47..0.53).contains(&share(&|p| p.change)));
        assert!((0.08..0.12).contains(&share(&|p| p.download)));
        for p in &plans {
            if p.events_per_call == BURST_EVENTS_PER_CALL {
                assert_eq!(p.new_events, 40);
            } else {
                assert_eq!(p.new_events, 3);
            }
        }
    }

    #[test]
    fn enrolment_plans_do_nothing_but_sync() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = Scenario {
            enrol_only: true,
            changing_share: 1.0,
            download_share: 1.0,
            ..scenario()
        };
        let p = s.plan(&mut rng);
        assert!(!p.change && !p.download && p.new_events == 0);
        let none = Scenario {
            download: None,
            download_share: 1.0,
            event_burst: 0.0,
            changing_share: 0.0,
            ..scenario()
        };
        let p = none.plan(&mut rng);
        assert!(!p.download && !p.change && p.new_events == 3);
    }
}
