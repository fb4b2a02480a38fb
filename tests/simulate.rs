//! The device simulator end to end over TLS: against the baseline responder, and against a
//! scripted server that plays the sync state machine and checks what each device reports.
//!
//! A run against the real server needs only `server::start` with the protocol handler in place
//! of [`Scripted`], then [`options_for`] and the same `assert_clean`/`assert_consistent` checks.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;

use common::{generated_cert, test_config};
use mobile_admin::server::{self, DeviceHandler, Reply};
use mobile_admin::sim::device::{digest_params, digest_subscriptions, GROUPS};
use mobile_admin::sim::{self, Rate, RunReport, SimOptions};
use mobile_admin::soap::{
    self, CmdData, Command, Decoded, ParamError, Params, Request, Response, Subscriptions,
    SyncInfo, Value,
};

const OPERATIONS: [&str; 7] = [
    "SessionBegin",
    "Heartbeat",
    "PutResult",
    "PutEvents",
    "klft-GetFileInfo",
    "klft-GetNextFileChunk",
    "SessionEnd",
];

/// A short run of `devices` devices keeping their state in `state_dir`, with no target yet.
fn quick(state_dir: &Path, devices: u32) -> SimOptions {
    SimOptions {
        devices,
        seed: 42,
        rate: Some(Rate::PerSecond(f64::from(devices))),
        duration: Some(Duration::from_secs(2)),
        concurrency: 32,
        events_per_session: 0,
        event_burst: 0.0,
        changing_share: 0.0,
        timeout: Duration::from_secs(10),
        state_dir: state_dir.to_owned(),
        ..SimOptions::default()
    }
}

/// `quick` aimed at a server started with [`test_config`] in `data_dir`.
fn options_for(addr: SocketAddr, data_dir: &Path, state_dir: &Path, devices: u32) -> SimOptions {
    SimOptions {
        server: Some(addr.to_string()),
        tls_name: Some("localhost".into()),
        cafile: Some(generated_cert(data_dir)),
        ..quick(state_dir, devices)
    }
}

fn count(run: &RunReport, metric: &str) -> u64 {
    run.latency_us.get(metric).map_or(0, |l| l.count)
}

fn assert_clean(run: &RunReport) {
    assert!(run.sessions_ok > 0, "no session succeeded: {run:#?}");
    assert_eq!(run.sessions_failed, 0, "{run:#?}");
    assert!(run.errors.is_empty(), "{:#?}", run.errors);
    assert_eq!(run.schedule.abandoned, 0);
}

/// Figures that must agree with each other in a run without errors.
fn assert_consistent(run: &RunReport) {
    let sessions = run.sessions_ok;
    let timed: u64 = OPERATIONS.iter().map(|op| count(run, op)).sum();
    assert_eq!(timed, run.calls, "every call is timed once");
    assert_eq!(count(run, "session"), sessions);
    assert_eq!(count(run, "SessionBegin"), sessions);
    assert_eq!(count(run, "Heartbeat"), sessions);
    assert_eq!(count(run, "SessionEnd"), sessions);
    assert_eq!(
        count(run, "PutResult"),
        run.commands
            .iter()
            .filter(|(k, _)| !k.starts_with("0 "))
            .map(|(_, n)| n)
            .sum::<u64>()
    );
    assert_eq!(
        run.commands.get("0 NO_COMMANDS").copied().unwrap_or(0),
        sessions
    );
    assert_eq!(run.events_acked, run.events_sent);
    assert_eq!(run.schedule.started, sessions);
    assert_eq!(
        run.tls_full_handshakes + run.tls_resumed_handshakes,
        run.connections
    );
    assert!((run.sessions_per_sec - sessions as f64 / run.elapsed_secs).abs() < 1e-6);
    assert!((run.calls_per_sec - run.calls as f64 / run.elapsed_secs).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_run_reports_consistent_figures() {
    let state = tempfile::tempdir().unwrap();
    let opts = SimOptions {
        baseline: true,
        events_per_session: 3,
        event_burst: 0.2,
        burst_calls: 3,
        changing_share: 0.5,
        download: Some("updates/base.bin".into()),
        download_share: 0.5,
        ..quick(state.path(), 20)
    };
    let report = sim::run(opts).await.unwrap();
    assert!(report.server.is_none() && report.ratio_sessions_per_sec.is_none());
    let run = report.baseline.expect("baseline ran");
    assert_clean(&run);
    assert_consistent(&run);
    // 20 devices at 20 sessions/s for 2 s; a slow machine may skip a few starts, never add any.
    assert!(
        run.sessions_ok + run.schedule.behind_schedule <= 40,
        "{run:#?}"
    );
    assert!(run.sessions_ok >= 10, "{run:#?}");
    assert_eq!(
        run.connections, run.sessions_ok,
        "one kept-alive connection per session"
    );
    assert!(run.events_acked >= 3 * run.sessions_ok);
    assert!(count(&run, "PutEvents") >= run.sessions_ok);
    assert_eq!(count(&run, "klft-GetFileInfo"), run.downloads_ok);
    assert_eq!(
        count(&run, "klft-GetNextFileChunk"),
        run.downloads_ok,
        "one chunk each"
    );
    assert_eq!(
        run.bytes_downloaded,
        run.downloads_ok * sim::baseline::FILE_LEN as u64
    );
    assert!(run.latency_us["SessionBegin"].p50 > 0);
    // The baseline's effects are not kept: the fleet on disk is untouched.
    assert!(!sim::Fleet::records_path(state.path(), 42).exists());
    assert_eq!(report.enrolled_after, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_per_call_without_resumption_opens_a_full_handshake_per_call() {
    let state = tempfile::tempdir().unwrap();
    let opts = SimOptions {
        baseline: true,
        connection_per_call: true,
        tls_resumption: sim::OnOff::Off,
        events_per_session: 1,
        duration: Some(Duration::from_secs(1)),
        ..quick(state.path(), 10)
    };
    let run = sim::run(opts).await.unwrap().baseline.unwrap();
    assert_clean(&run);
    assert_consistent(&run);
    assert_eq!(run.connections, run.calls);
    assert_eq!(run.tls_resumed_handshakes, 0);
    assert_eq!(count(&run, "connect"), run.calls);
}

/// What the scripted server knows about one device (SPEC section 6, reduced to hash comparisons).
#[derive(Default, Clone)]
struct Known {
    info: Vec<u8>,
    state: Vec<u8>,
    settings: Vec<u8>,
    policy: Vec<u8>,
    subscriptions: Vec<u8>,
    group: String,
}

struct Session {
    device: String,
    queue: VecDeque<Command>,
    sent: i32,
}

/// A server that plans commands from the reported hashes, checks every result against what it
/// pushed or was told, and stores events by id.
struct Scripted {
    policy: Params,
    subscriptions: Subscriptions,
    devices: Mutex<HashMap<String, Known>>,
    sessions: Mutex<HashMap<String, Session>>,
    next_session: AtomicU64,
    events: Mutex<HashSet<String>>,
    duplicates: AtomicU64,
    /// Store events but answer with an error, as if the reply were lost.
    lose_event_replies: AtomicBool,
    problems: Mutex<Vec<String>>,
}

impl Scripted {
    fn new() -> Scripted {
        Scripted {
            policy: Params::new().with("PublishEvents", Value::Bool(true)).with(
                "Scan",
                Value::Params(Params::new().with("Level", Value::Int(2))),
            ),
            subscriptions: Subscriptions {
                types_critical: vec!["GNRL_EV_VIRUS_FOUND".into()],
                types_info: vec!["GNRL_EV_UPDATE_FINISHED".into()],
                ..Subscriptions::default()
            },
            devices: Mutex::default(),
            sessions: Mutex::default(),
            next_session: AtomicU64::new(1),
            events: Mutex::default(),
            duplicates: AtomicU64::new(0),
            lose_event_replies: AtomicBool::new(false),
            problems: Mutex::default(),
        }
    }

    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }

    fn plan(&self, known: &Known, sync: &SyncInfo) -> VecDeque<Command> {
        let mut queue = VecDeque::new();
        if sync.hash_info != known.info {
            queue.push_back(Command::bare(5));
        }
        if sync.hash_state != known.state {
            queue.push_back(Command::bare(6));
        }
        if sync.hash_stgs != known.settings {
            queue.push_back(Command::bare(1));
        }
        if sync.hash_pol != known.policy {
            queue.push_back(Command {
                code: 3,
                data: Some(CmdData::Par(self.policy.clone())),
            });
        }
        if sync.hash_sbsc != known.subscriptions {
            queue.push_back(Command {
                code: 4,
                data: Some(CmdData::Subscriptions(self.subscriptions.clone())),
            });
        }
        queue
    }

    /// Records a device's result; returns whether it is what was asked for.
    fn apply(&self, known: &mut Known, sent: i32, result: &Command) -> bool {
        if result.code != sent {
            return false;
        }
        match (sent, &result.data) {
            (5, Some(CmdData::AppInfo(info))) => {
                known.info = info.hash.clone();
                known.group = info.dev_info.presumed_group.clone();
            }
            (6, Some(CmdData::AppState(state))) => known.state = state.hash.clone(),
            (1, Some(CmdData::ParAndHash { hash, parameters })) => {
                if parameters.get("AntiVirus").is_none() {
                    self.problem("settings without the AntiVirus section".into());
                }
                known.settings = hash.clone();
            }
            (3, Some(CmdData::Hash(h))) => {
                if *h != digest_params(&self.policy) {
                    self.problem("policy hash is not the digest of the policy".into());
                }
                known.policy = h.clone();
            }
            (4, Some(CmdData::Hash(h))) => {
                if *h != digest_subscriptions(&self.subscriptions) {
                    self.problem("subscriptions hash is not their digest".into());
                }
                known.subscriptions = h.clone();
            }
            _ => return false,
        }
        true
    }

    fn respond(&self, request: Request) -> Response {
        let session_error = || ParamError::new(1186, "TEST", "unknown session");
        match request {
            Request::SessionBegin { device_id, .. } => {
                let id = format!("s{}", self.next_session.fetch_add(1, Ordering::Relaxed));
                self.devices
                    .lock()
                    .unwrap()
                    .entry(device_id.clone())
                    .or_default();
                self.sessions.lock().unwrap().insert(
                    id.clone(),
                    Session {
                        device: device_id,
                        queue: VecDeque::new(),
                        sent: 0,
                    },
                );
                Response::SessionBegin {
                    session_id: id,
                    protocol_version: soap::PROTOCOL_VERSION,
                    error: None,
                }
            }
            Request::Heartbeat { session_id, sync } => {
                let mut sessions = self.sessions.lock().unwrap();
                let Some(session) = sessions.get_mut(&session_id) else {
                    return Response::error_reply(soap::Operation::Heartbeat, session_error());
                };
                let known = self.devices.lock().unwrap()[&session.device].clone();
                session.queue = sync.map(|s| self.plan(&known, &s)).unwrap_or_default();
                let command = session.queue.pop_front().unwrap_or(Command::bare(0));
                session.sent = command.code;
                Response::Heartbeat {
                    command,
                    error: None,
                }
            }
            Request::PutResult { session_id, result } => {
                let mut sessions = self.sessions.lock().unwrap();
                let Some(session) = sessions.get_mut(&session_id) else {
                    return Response::error_reply(soap::Operation::PutResult, session_error());
                };
                let mut devices = self.devices.lock().unwrap();
                let known = devices.get_mut(&session.device).unwrap();
                if !self.apply(known, session.sent, &result) {
                    self.problem(format!("bad result for {}: {result:?}", session.sent));
                    return Response::error_reply(
                        soap::Operation::PutResult,
                        ParamError::new(1568, "TEST", "Unexpected response code"),
                    );
                }
                let next_command = session.queue.pop_front().unwrap_or(Command::bare(0));
                session.sent = next_command.code;
                Response::PutResult {
                    next_command,
                    error: None,
                }
            }
            Request::PutEvents { events, .. } => {
                let mut stored = self.events.lock().unwrap();
                for e in events {
                    if !stored.insert(e.event_id) {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let error = self
                    .lose_event_replies
                    .load(Ordering::Relaxed)
                    .then(|| ParamError::new(1195, "TEST", "try later"));
                Response::PutEvents { error }
            }
            Request::SessionEnd { session_id } => {
                let error = match self.sessions.lock().unwrap().remove(&session_id) {
                    Some(_) => None,
                    None => Some(session_error()),
                };
                Response::SessionEnd { error }
            }
            other => Response::error_reply(
                other.operation(),
                ParamError::new(1186, "TEST", "no update files here"),
            ),
        }
    }
}

#[async_trait::async_trait]
impl DeviceHandler for Scripted {
    async fn post(&self, body: Bytes, _peer: SocketAddr) -> Reply {
        match soap::decode_request(&body, &soap::Limits::default()) {
            Ok(Decoded::Ok { ctx, request }) => Reply::xml(
                StatusCode::OK,
                soap::encode_response(&ctx, &self.respond(request)),
            ),
            Ok(Decoded::Invalid { ctx, op, error }) => {
                self.problem(format!("invalid {op:?}: {error}"));
                Reply::xml(
                    StatusCode::OK,
                    soap::encode_response(
                        &ctx,
                        &Response::error_reply(op, ParamError::new(1192, "TEST", "bad format")),
                    ),
                )
            }
            Err(fault) => {
                self.problem(format!("fault: {fault}"));
                Reply::xml(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    soap::encode_fault(&soap::MessageContext::default(), &fault),
                )
            }
        }
    }

    fn get(&self, _path: &str, _host: Option<&str>) -> Option<Reply> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_enrols_syncs_and_is_known_on_the_next_run() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let scripted = Arc::new(Scripted::new());
    let running = server::start(test_config(data.path()).device_listener(), scripted.clone())
        .await
        .unwrap();
    let base = options_for(running.addr, data.path(), state.path(), 6);

    // Enrolment: every device's first contact runs the whole sync, 5 6 1 3 4 then 0.
    let enrol = sim::run(SimOptions {
        enrol_only: true,
        duration: None,
        baseline: true,
        ..base.clone()
    })
    .await
    .unwrap();
    let run = enrol.server.as_ref().unwrap();
    assert_clean(run);
    assert_consistent(run);
    assert_eq!(run.sessions_ok, 6);
    for name in [
        "5 APPINFO_GET",
        "6 APPSTATE_GET",
        "1 SETTINGS_GET",
        "3 POLICY_PUT",
        "4 SUBSCRIPTIONS_PUT",
    ] {
        assert_eq!(
            run.commands.get(name),
            Some(&6),
            "{name}: {:?}",
            run.commands
        );
    }
    assert_eq!((enrol.enrolled_before, enrol.enrolled_after), (0, 6));
    assert!(enrol.baseline.is_some() && enrol.ratio_sessions_per_sec.is_some());
    let devices = scripted.devices.lock().unwrap().clone();
    assert_eq!(devices.len(), 6);
    assert!(devices.contains_key("sim-42-0") && devices.contains_key("sim-42-5"));
    assert!(devices.values().all(|k| GROUPS.contains(&k.group.as_str())));
    assert!(sim::Fleet::records_path(state.path(), 42).exists());

    // Nothing left to enrol.
    let again = sim::run(SimOptions {
        enrol_only: true,
        duration: None,
        ..base.clone()
    })
    .await
    .unwrap();
    assert_eq!(again.server.as_ref().unwrap().schedule.started, 0);

    // A later run is a fleet of known devices: unchanged hashes, so no commands at all.
    let steady = sim::run(SimOptions {
        rate: Some(Rate::Max),
        duration: Some(Duration::from_secs(1)),
        events_per_session: 2,
        ..base.clone()
    })
    .await
    .unwrap();
    let run = steady.server.as_ref().unwrap();
    assert_clean(run);
    assert_consistent(run);
    assert_eq!(steady.enrolled_before, 6);
    assert_eq!(run.commands.len(), 1, "{:?}", run.commands);
    assert_eq!(count(run, "PutResult"), 0);
    assert_eq!(
        scripted.events.lock().unwrap().len() as u64,
        run.events_acked
    );
    assert_eq!(scripted.duplicates.load(Ordering::Relaxed), 0);

    // Local changes make the server fetch settings and state again, and only those.
    let changing = sim::run(SimOptions {
        changing_share: 1.0,
        ..base.clone()
    })
    .await
    .unwrap();
    let run = changing.server.as_ref().unwrap();
    assert_clean(run);
    assert_consistent(run);
    let sessions = run.sessions_ok;
    assert_eq!(run.commands.get("1 SETTINGS_GET"), Some(&sessions));
    assert_eq!(run.commands.get("6 APPSTATE_GET"), Some(&sessions));
    assert_eq!(run.commands.len(), 3, "{:?}", run.commands);

    assert!(
        scripted.problems.lock().unwrap().is_empty(),
        "{:?}",
        scripted.problems.lock().unwrap()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_events_are_resent_with_the_same_ids() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let scripted = Arc::new(Scripted::new());
    let running = server::start(test_config(data.path()).device_listener(), scripted.clone())
        .await
        .unwrap();
    let base = SimOptions {
        events_per_session: 4,
        ..options_for(running.addr, data.path(), state.path(), 4)
    };

    // The server stores the events but the devices never learn it.
    scripted.lose_event_replies.store(true, Ordering::Relaxed);
    let lost = sim::run(SimOptions {
        rate: Some(Rate::PerSecond(4.0)),
        duration: Some(Duration::from_secs(1)),
        ..base.clone()
    })
    .await
    .unwrap();
    let run = lost.server.as_ref().unwrap();
    assert_eq!(run.events_acked, 0);
    assert_eq!(
        run.errors.get("PutEvents: oError 1195"),
        Some(&run.sessions_failed)
    );
    let stored = scripted.events.lock().unwrap().len() as u64;
    assert!(stored > 0);
    assert_eq!(
        stored, run.events_sent,
        "one session per device, each event sent once"
    );

    // Next run: each device's first session resends its backlog under the same ids.
    scripted.lose_event_replies.store(false, Ordering::Relaxed);
    scripted.duplicates.store(0, Ordering::Relaxed);
    let resent = sim::run(SimOptions {
        rate: Some(Rate::Max),
        duration: Some(Duration::from_secs(1)),
        ..base.clone()
    })
    .await
    .unwrap();
    let run = resent.server.as_ref().unwrap();
    assert_clean(run);
    assert_consistent(run);
    assert_eq!(run.events_resent, stored);
    assert_eq!(scripted.duplicates.load(Ordering::Relaxed), stored);
    let fleet = sim::Fleet::load(state.path(), 42, 4).unwrap();
    for i in 0..4 {
        let record = fleet.get(i).unwrap().record;
        assert_eq!(record.events_acked, record.events_created);
    }
    assert!(scripted.problems.lock().unwrap().is_empty());
    running.stop().await;
}

/// The simulator against the real server: the report and the database agree, and a second run is a
/// fleet of known devices with nothing to sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_real_server_the_report_and_the_database_agree() {
    let server = common::TestServer::start().await;
    std::fs::create_dir_all(server.config.updates_dir().join("bases")).unwrap();
    std::fs::write(
        server.config.updates_dir().join("bases/av.bin"),
        vec![3u8; 100_000],
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut options = options_for(server.addr(), server.dir.path(), state.path(), 20);
    options.events_per_session = 2;
    options.download = Some("bases/av.bin".into());
    options.download_share = 0.5;
    let report = sim::run(options.clone()).await.unwrap();
    let run = report.server.as_ref().expect("a server run");
    assert_clean(run);
    assert_consistent(run);
    assert!(run.downloads_ok > 0);
    assert_eq!(
        run.bytes_downloaded,
        run.downloads_ok * 100_000,
        "whole files, CRCs checked"
    );
    assert_eq!(report.enrolled_after, 20);

    let store = &server.app.store;
    assert_eq!(store.device_count().await.unwrap(), 20);
    assert_eq!(
        store.event_count().await.unwrap() as u64,
        run.events_acked,
        "every acknowledged event is stored, once"
    );
    // First contacts ran the whole sync: 20 app infos and states are stored.
    let db = server.sql().await;
    let infos: i64 = db.scalar("SELECT count(*) FROM device_app_info").await;
    assert_eq!(infos, 20);
    assert_eq!(run.commands.get("5 APPINFO_GET").copied(), Some(20));

    // The second run: known devices, unchanged hashes, so no sync commands at all.
    options.download = None;
    let again = sim::run(options).await.unwrap();
    let run2 = again.server.as_ref().unwrap();
    assert_clean(run2);
    assert_consistent(run2);
    assert_eq!(again.enrolled_before, 20);
    let sync_commands: u64 = run2
        .commands
        .iter()
        .filter(|(k, _)| !k.starts_with("0 "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(sync_commands, 0, "{:?}", run2.commands);
    assert_eq!(
        store.event_count().await.unwrap() as u64,
        run.events_acked + run2.events_acked
    );
    server.stop().await;
}
