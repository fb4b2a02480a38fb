//! Product backend commands under load (`simulate --backend-consoles K`): K service consoles over
//! the live API answer `echo` commands for one product and version, while initiators (each its own
//! live API connection) send commands one after another and wait for each to end; reports
//! commands per second and the round-trip time from sending to the initiator seeing the result.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::client::{client_config, Trust};
use super::stats::Latency;
use super::SimError;

const PRODUCT: &str = "BenchProduct";
const VERSION: &str = "1.0";

/// What the consoles and initiators do.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub admin: SocketAddr,
    pub tls_name: String,
    pub trust: Trust,
    /// An account with Execute on both FUNC_AREA_PRODUCT_INTEGRATION and
    /// FUNC_AREA_BACKEND_COMMANDS (an administrator).
    pub user: String,
    pub password_file: PathBuf,
    pub consoles: u32,
    pub initiators: u32,
    pub duration: Duration,
}

/// What they measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendReport {
    pub consoles: u32,
    pub initiators: u32,
    /// Commands that ended `done` with the result the console set.
    pub commands: u64,
    /// Commands that failed, or ended with another result.
    pub failed: u64,
    pub commands_per_sec: f64,
    /// From sending a command to the initiator holding its result, in microseconds.
    pub round_trip_us: Latency,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// One live API connection, logged in with `token`.
struct Conn {
    ws: Socket,
    tid: i64,
    /// Messages that arrived while a reply was awaited.
    held: std::collections::VecDeque<Value>,
}

impl Conn {
    async fn open(
        opts: &BackendOptions,
        tls: &tokio_rustls::TlsConnector,
        token: &str,
    ) -> Result<Conn, String> {
        let name = rustls::pki_types::ServerName::try_from(opts.tls_name.clone())
            .map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(opts.admin)
            .await
            .map_err(|e| e.to_string())?;
        let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let request = format!("wss://{}/api/v1/ws", opts.admin)
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| e.to_string())?;
        let mut conn = Conn {
            ws,
            tid: 0,
            held: Default::default(),
        };
        conn.call(
            "core",
            "user",
            "login",
            json!({"user": opts.user, "token": token}),
        )
        .await?;
        Ok(conn)
    }

    async fn next(&mut self) -> Result<Value, String> {
        if let Some(held) = self.held.pop_front() {
            return Ok(held);
        }
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).map_err(|e| e.to_string())
                }
                Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// A request's `data`, or its error.
    async fn call(
        &mut self,
        class: &str,
        subclass: &str,
        cmd: &str,
        data: Value,
    ) -> Result<Value, String> {
        self.tid += 1;
        let tid = self.tid;
        let request =
            json!({"class": class, "subclass": subclass, "cmd": cmd, "data": data, "tid": tid});
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let message = match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())?
                }
                Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(_)) => continue,
            };
            if message["tid"] == json!(tid) && message.get("result").is_some() {
                return if message["result"] == "ok" {
                    Ok(message["data"].clone())
                } else {
                    Err(message.to_string())
                };
            }
            self.held.push_back(message);
        }
    }
}

/// A console: answers every command it is given with its params.
async fn console(
    mut conn: Conn,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    conn.call(
        "backend",
        "command",
        "subscribe",
        json!({"event": "KLSRV_EV_PROD_BACKEND_CMD",
            "filter": {"CMD_PROD_NAME": PRODUCT, "CMD_PROD_VERSION": VERSION}}),
    )
    .await?;
    loop {
        let message = tokio::select! {
            m = conn.next() => m?,
            _ = stopped.changed() => return Ok(()),
        };
        if message["cmd"] != "event" {
            continue;
        }
        let id = message["data"]["body"]["CMD_ID"].clone();
        let payload = conn
            .call("backend", "command", "get_payload", json!({"CMD_ID": id}))
            .await?;
        conn.call(
            "backend",
            "command",
            "set_result",
            json!({"CMD_ID": id, "result": payload["CMD_PARAMS"]}),
        )
        .await?;
    }
}

/// Runs the consoles and initiators for `duration`, and reports.
pub async fn run(opts: BackendOptions) -> Result<BackendReport, SimError> {
    let password = std::fs::read_to_string(&opts.password_file)
        .map_err(|e| SimError::Options(format!("{}: {e}", opts.password_file.display())))?
        .trim()
        .to_string();
    let config = client_config(&opts.trust, false)?;
    let token =
        super::live::login_token(&opts.admin, &opts.tls_name, &config, &opts.user, &password)
            .await?;
    let tls = tokio_rustls::TlsConnector::from(config);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut consoles = Vec::new();
    for _ in 0..opts.consoles {
        let conn = Conn::open(&opts, &tls, &token)
            .await
            .map_err(|e| SimError::Options(format!("console: {e}")))?;
        consoles.push(tokio::spawn(console(conn, stopped.clone())));
    }
    // Let the subscriptions land before the first command.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
    ));
    let started = Instant::now();
    let until = started + opts.duration;
    let mut initiators = Vec::new();
    for n in 0..opts.initiators {
        let mut conn = Conn::open(&opts, &tls, &token)
            .await
            .map_err(|e| SimError::Options(format!("initiator: {e}")))?;
        let (done, failed, hist) = (done.clone(), failed.clone(), hist.clone());
        initiators.push(tokio::spawn(async move {
            let mut i: i64 = 0;
            while Instant::now() < until {
                i += 1;
                let params =
                    json!({"n": {"type": "long", "value": i}, "by": {"type": "int", "value": n}});
                let begun = Instant::now();
                let outcome = async {
                    let sent = conn
                        .call(
                            "backend",
                            "command",
                            "send",
                            json!({"CMD_NAME": "echo", "CMD_PROD_NAME": PRODUCT,
                                "CMD_PROD_VERSION": VERSION, "CMD_PARAMS": params}),
                        )
                        .await?;
                    conn.call(
                        "backend",
                        "command",
                        "get",
                        json!({"CMD_ID": sent["CMD_ID"], "wait": 30}),
                    )
                    .await
                }
                .await;
                match outcome {
                    Ok(command) if command["state"] == "done" && command["result"] == params => {
                        let micros = begun.elapsed().as_micros() as u64;
                        let _ = hist.lock().unwrap().record(micros.max(1));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(command) => {
                        eprintln!("backend command ended otherwise: {command}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("backend command: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    for initiator in initiators {
        let _ = initiator.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for console in consoles {
        if let Ok(Err(e)) = console.await {
            eprintln!("console: {e}");
        }
    }
    let hist = hist.lock().unwrap();
    let commands = done.load(Ordering::Relaxed);
    Ok(BackendReport {
        consoles: opts.consoles,
        initiators: opts.initiators,
        commands,
        failed: failed.load(Ordering::Relaxed),
        commands_per_sec: commands as f64 / elapsed.max(1e-9),
        round_trip_us: Latency {
            count: hist.len(),
            p50: hist.value_at_quantile(0.5),
            p90: hist.value_at_quantile(0.9),
            p99: hist.value_at_quantile(0.99),
            max: hist.max(),
            mean: hist.mean() as u64,
        },
    })
}
