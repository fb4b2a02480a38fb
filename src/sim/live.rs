//! Live API subscribers for load tests (`simulate --live-subscribers N`): N WebSocket connections to
//! the admin port, each logged in and subscribed, counting the events they receive and how long
//! after their commit (`at`) each arrived. A mix: 1% follow everything of class `mdm`, 1% every
//! device event, the rest the events of one device each of the fleet.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::client::{client_config, Trust};
use super::stats::Latency;
use super::{identity, SimError};

/// What the subscribers do.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub admin: SocketAddr,
    pub tls_name: String,
    pub trust: Trust,
    pub user: String,
    pub password_file: PathBuf,
    pub subscribers: u32,
    pub duration: Duration,
    /// The fleet whose devices the specific subscriptions name.
    pub devices: u32,
    pub seed: u64,
}

/// What they saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveReport {
    pub subscribers: u32,
    pub connected: u64,
    /// Connections the server closed before the end.
    pub closed_early: u64,
    pub events: u64,
    pub events_per_sec: f64,
    /// From the event's commit (`at`) to its arrival, in microseconds.
    pub delivery_us: Latency,
}

#[derive(Default)]
struct Counts {
    connected: AtomicU64,
    closed_early: AtomicU64,
    events: AtomicU64,
}

/// The subscription of subscriber `n`.
fn subscription(n: u32, opts: &LiveOptions) -> Value {
    match n % 100 {
        0 => json!({"class": "mdm"}),
        1 => json!({"class": "mdm", "subclass": "event"}),
        _ => {
            let index =
                (identity::pick(opts.seed, n, "live", 0) % u64::from(opts.devices.max(1))) as u32;
            json!({"class": "mdm", "subclass": "event",
                "obj_id": identity::device_id(opts.seed, index)})
        }
    }
}

/// Logs `user` in over the REST API at `admin` with a password; the session token.
pub(super) async fn login_token(
    admin: &SocketAddr,
    tls_name: &str,
    config: &Arc<rustls::ClientConfig>,
    user: &str,
    password: &str,
) -> Result<String, SimError> {
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((**config).clone())
        .resolve(tls_name, *admin)
        .build()
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let answer: Value = http
        .post(format!("https://{tls_name}:{}/api/v1/login", admin.port()))
        .json(&json!({"name": user, "password": password}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| SimError::Options(format!("admin login: {e}")))?
        .json()
        .await
        .map_err(|e| SimError::Options(format!("admin login: {e}")))?;
    answer["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| SimError::Options("admin login: no token".into()))
}

/// Connects the subscribers, waits `duration`, and reports.
pub async fn run(opts: LiveOptions) -> Result<LiveReport, SimError> {
    let password = std::fs::read_to_string(&opts.password_file)
        .map_err(|e| SimError::Options(format!("{}: {e}", opts.password_file.display())))?
        .trim()
        .to_string();
    let config = client_config(&opts.trust, false)?;
    // One password login for a token; each subscriber logs in with the token (a password check
    // per connection would measure argon2, not the live API).
    let password = login_token(&opts.admin, &opts.tls_name, &config, &opts.user, &password).await?;
    let tls = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from(opts.tls_name.clone())
        .map_err(|e| SimError::Options(format!("--tls-name: {e}")))?;
    let counts = Arc::new(Counts::default());
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for n in 0..opts.subscribers {
        let subscribe = subscription(n, &opts);
        let (tls, name, counts, hist) = (tls.clone(), name.clone(), counts.clone(), hist.clone());
        let (admin, user, password) = (opts.admin, opts.user.clone(), password.clone());
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let session = async {
                let tcp = tokio::net::TcpStream::connect(admin).await.ok()?;
                let stream = tls.connect(name, tcp).await.ok()?;
                let request = format!("wss://{}/api/v1/ws", admin)
                    .into_client_request()
                    .ok()?;
                let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
                    .await
                    .ok()?;
                let login = json!({"class": "core", "subclass": "user", "cmd": "login",
                    "data": {"user": user, "token": password}, "tid": 1});
                let sub = json!({"class": "core", "subclass": "event", "cmd": "subscribe",
                    "data": subscribe, "tid": 2});
                for request in [login, sub] {
                    ws.send(Message::text(request.to_string())).await.ok()?;
                    loop {
                        let Some(Ok(Message::Text(text))) = ws.next().await else {
                            return None;
                        };
                        let Ok(reply) = serde_json::from_str::<Value>(&text) else {
                            return None;
                        };
                        if reply["tid"] == request["tid"] && reply.get("result").is_some() {
                            if reply["result"] != "ok" {
                                eprintln!("live subscriber refused: {reply}");
                                return None;
                            }
                            break;
                        }
                    }
                }
                counts.connected.fetch_add(1, Ordering::Relaxed);
                loop {
                    let message = tokio::select! {
                        m = ws.next() => m,
                        _ = stopped.changed() => return Some(()),
                    };
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            counts.closed_early.fetch_add(1, Ordering::Relaxed);
                            return Some(());
                        }
                        _ => continue,
                    };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if v["cmd"] != "event" {
                        if v["result"] == "error" {
                            eprintln!("live subscriber: {v}");
                        }
                        continue;
                    }
                    counts.events.fetch_add(1, Ordering::Relaxed);
                    let at = v["data"]["at"].as_str().and_then(|at| {
                        time::OffsetDateTime::parse(
                            at,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    });
                    if let Some(at) = at {
                        let micros = (time::OffsetDateTime::now_utc() - at).whole_microseconds();
                        let _ = hist.lock().unwrap().record(micros.max(1) as u64);
                    }
                }
            };
            if session.await.is_none() {
                counts.closed_early.fetch_add(1, Ordering::Relaxed);
            }
        }));
        if n % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let started = std::time::Instant::now();
    tokio::time::sleep(opts.duration).await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hist = hist.lock().unwrap();
    let events = counts.events.load(Ordering::Relaxed);
    Ok(LiveReport {
        subscribers: opts.subscribers,
        connected: counts.connected.load(Ordering::Relaxed),
        closed_early: counts.closed_early.load(Ordering::Relaxed),
        events,
        events_per_sec: events as f64 / elapsed.max(1e-9),
        delivery_us: Latency {
            count: hist.len(),
            p50: hist.value_at_quantile(0.5),
            p90: hist.value_at_quantile(0.9),
            p99: hist.value_at_quantile(0.99),
            max: hist.max(),
            mean: hist.mean() as u64,
        },
    })
}
