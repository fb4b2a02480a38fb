//! An example service console for product backend commands: it registers for one product name and
//! version, either pushed over the live WebSocket API or by event polling over the REST API, and
//! answers a small command set. Everything else gets `ERR_NOT_SUPPORTED`.
//!
//! Commands:
//! - `ping`: the result `{"reply": "pong"}`.
//! - `echo`: the result is `CMD_PARAMS`, unchanged.
//! - `sum`: adds the integers of the array `values` (`int` or `long`); the result `{"sum": long}`.
//! - `check-token`: looks up the string `token` among `--known-token VALUE=EXPIRY`: unknown (or
//!   none) is `ERR_UNKNOWN_TOKEN`, past its expiry `ERR_EXPIRED_TOKEN`, else the result
//!   `{"valid_until": datetime}`.
//!
//! ```text
//! cargo run --example backend_console -- --server localhost:13299 \
//!     --ca data/tls/device-cert.pem --user console --password-file console.password \
//!     --product MobileSecurity --version 11.0 [--poll]
//! ```
//!
//! It prints `subscribed <id>` once registered, then one line per command it answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const EVENT: &str = "KLSRV_EV_PROD_BACKEND_CMD";
const ORIGINATOR: &str = "example backend console";

#[derive(Debug, Parser)]
struct Args {
    /// The admin port, `HOST:PORT` (the host is checked against the certificate).
    #[arg(long)]
    server: String,
    /// The certificate (or CA) the admin port's certificate is checked against.
    #[arg(long)]
    ca: PathBuf,
    /// An account with the Execute right on FUNC_AREA_PRODUCT_INTEGRATION.
    #[arg(long)]
    user: String,
    #[arg(long)]
    password_file: PathBuf,
    /// The product name and version to serve.
    #[arg(long)]
    product: String,
    #[arg(long)]
    version: String,
    /// Register by event polling over the REST API instead of over the WebSocket API.
    #[arg(long)]
    poll: bool,
    /// A token `check-token` knows, `VALUE=EXPIRY` (RFC 3339).
    #[arg(long = "known-token")]
    known_tokens: Vec<String>,
}

/// A command's outcome: a result container, or an error container.
type Outcome = Result<Value, Value>;

fn typed(kind: &str, value: Value) -> Value {
    json!({"type": kind, "value": value})
}

fn error(id: &str, code: i32, description: String, line: u32) -> Value {
    json!({
        "CMD_ERR_STR_ID": id,
        "CMD_ERR_ORIGINATOR_ID": ORIGINATOR,
        "CMD_ERR_ID": code,
        "CMD_ERR_DESCR": description,
        "CMD_ERR_FNAME": file!(),
        "CMD_ERR_LNUMBER": line,
    })
}

/// What the console does with one command.
fn run_command(name: &str, params: &Value, tokens: &[(String, OffsetDateTime)]) -> Outcome {
    match name {
        "ping" => Ok(json!({"reply": typed("string", "pong".into())})),
        "echo" => Ok(params.clone()),
        "sum" => {
            let values = params["values"]["value"].as_array().ok_or_else(|| {
                error(
                    "ERR_INVALID_PARAMS",
                    400,
                    "sum needs the array values".into(),
                    line!(),
                )
            })?;
            let mut sum: i64 = 0;
            for v in values {
                let n = match (v["type"].as_str(), v["value"].as_i64()) {
                    (Some("int" | "long"), Some(n)) => n,
                    _ => {
                        return Err(error(
                            "ERR_INVALID_PARAMS",
                            400,
                            format!("sum adds integers, not {v}"),
                            line!(),
                        ))
                    }
                };
                sum = sum.checked_add(n).ok_or_else(|| {
                    error(
                        "ERR_INVALID_PARAMS",
                        400,
                        "the sum overflows".into(),
                        line!(),
                    )
                })?;
            }
            Ok(json!({"sum": typed("long", sum.into())}))
        }
        "check-token" => {
            let token = params["token"]["value"].as_str().unwrap_or("");
            let Some((_, expiry)) = tokens.iter().find(|(t, _)| t == token) else {
                return Err(error(
                    "ERR_UNKNOWN_TOKEN",
                    401,
                    "the product backend does not know this token".into(),
                    line!(),
                ));
            };
            if *expiry <= OffsetDateTime::now_utc() {
                return Err(error(
                    "ERR_EXPIRED_TOKEN",
                    401,
                    "the token has expired".into(),
                    line!(),
                ));
            }
            let until = expiry
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            Ok(json!({"valid_until": typed("datetime", until.into())}))
        }
        other => Err(error(
            "ERR_NOT_SUPPORTED",
            501,
            format!("command {other:?} is not supported by this console"),
            line!(),
        )),
    }
}

fn known_tokens(args: &Args) -> anyhow::Result<Vec<(String, OffsetDateTime)>> {
    args.known_tokens
        .iter()
        .map(|t| {
            let (value, expiry) = t
                .split_once('=')
                .ok_or_else(|| anyhow!("--known-token is VALUE=EXPIRY"))?;
            let expiry =
                OffsetDateTime::parse(expiry, &time::format_description::well_known::Rfc3339)
                    .context("the expiry of --known-token is an RFC 3339 time")?;
            Ok((value.to_string(), expiry))
        })
        .collect()
}

fn report(id: &str, name: &str, outcome: &Outcome) {
    match outcome {
        Ok(_) => println!("{id} {name} done"),
        Err(e) => println!(
            "{id} {name} failed {}",
            e["CMD_ERR_STR_ID"].as_str().unwrap_or("")
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let password = std::fs::read_to_string(&args.password_file)
        .with_context(|| format!("reading {}", args.password_file.display()))?;
    let tokens = known_tokens(&args)?;
    let tls = mobile_admin::tls::client_config(&args.ca)?;
    if args.poll {
        poll(&args, password.trim(), &tokens, tls).await
    } else {
        live(&args, password.trim(), &tokens, tls).await
    }
}

/// Event polling over the REST API.
async fn poll(
    args: &Args,
    password: &str,
    tokens: &[(String, OffsetDateTime)],
    tls: rustls::ClientConfig,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()?;
    let base = format!("https://{}/api/v1", args.server);
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut request = client.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::Ok((status.as_u16(), body))
        }
    };
    let (status, login) = call(
        reqwest::Method::POST,
        "/login",
        None,
        Some(json!({"name": args.user, "password": password})),
    )
    .await?;
    if status != 200 {
        bail!("login refused: {login}");
    }
    let token = login["token"].as_str().unwrap_or_default().to_string();
    let token = Some(token.as_str());
    let subscription = json!({
        "event": EVENT,
        "filter": {"CMD_PROD_NAME": args.product, "CMD_PROD_VERSION": args.version},
    });
    let mut id = String::new();
    let mut period = Duration::from_secs(1);
    loop {
        if id.is_empty() {
            let (status, sub) = call(
                reqwest::Method::POST,
                "/backend-subscriptions",
                token,
                Some(subscription.clone()),
            )
            .await?;
            if status != 200 {
                bail!("subscription refused: {sub}");
            }
            id = sub["id"].as_str().unwrap_or_default().to_string();
            println!("subscribed {id}");
        }
        let (status, got) = call(
            reqwest::Method::POST,
            &format!("/backend-subscriptions/{id}/retrieve"),
            token,
            None,
        )
        .await?;
        match status {
            200 => {}
            // The subscription lapsed: subscribe again.
            404 => {
                id.clear();
                continue;
            }
            _ => bail!("retrieval refused: {got}"),
        }
        if let Some(ms) = got["period"].as_u64() {
            period = Duration::from_millis(ms.max(10));
        }
        let events = got["events"].as_array().cloned().unwrap_or_default();
        for event in &events {
            let cmd = event["body"]["CMD_ID"].as_str().unwrap_or_default();
            let (status, payload) = call(
                reqwest::Method::GET,
                &format!("/backend-commands/{cmd}/payload"),
                token,
                None,
            )
            .await?;
            if status != 200 {
                eprintln!("{cmd}: no payload: {payload}");
                continue;
            }
            let name = payload["CMD_NAME"].as_str().unwrap_or_default();
            let outcome = run_command(name, &payload["CMD_PARAMS"], tokens);
            let (path, body) = match &outcome {
                Ok(result) => ("result", result.clone()),
                Err(error) => ("error", error.clone()),
            };
            let (status, answer) = call(
                reqwest::Method::PUT,
                &format!("/backend-commands/{cmd}/{path}"),
                token,
                Some(body),
            )
            .await?;
            if status != 200 {
                eprintln!("{cmd}: answer refused: {answer}");
                continue;
            }
            report(cmd, name, &outcome);
        }
        if events.is_empty() {
            tokio::time::sleep(period).await;
        }
    }
}

/// Pushed events over the live WebSocket API.
async fn live(
    args: &Args,
    password: &str,
    tokens: &[(String, OffsetDateTime)],
    tls: rustls::ClientConfig,
) -> anyhow::Result<()> {
    let host = args
        .server
        .rsplit_once(':')
        .map_or(args.server.as_str(), |(host, _)| host)
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&args.server).await?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await?;
    let request = format!("wss://{}/api/v1/ws", args.server).into_client_request()?;
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream).await?;
    let mut tid = 0i64;
    let mut waiting: std::collections::VecDeque<Value> = Default::default();

    // Sends a request and waits for its reply, keeping events that come in between.
    macro_rules! call {
        ($class:expr, $subclass:expr, $cmd:expr, $data:expr) => {{
            tid += 1;
            let request = json!({"class": $class, "subclass": $subclass, "cmd": $cmd,
                "data": $data, "tid": tid});
            socket.send(Message::text(request.to_string())).await?;
            loop {
                let message = socket
                    .next()
                    .await
                    .ok_or_else(|| anyhow!("the server closed the connection"))??;
                let Message::Text(text) = message else {
                    if let Message::Close(frame) = message {
                        bail!("the server closed the connection: {frame:?}");
                    }
                    continue;
                };
                let value: Value = serde_json::from_str(&text)?;
                if value["tid"] == json!(tid) && value.get("result").is_some() {
                    break value;
                }
                waiting.push_back(value);
            }
        }};
    }

    let login = call!(
        "core",
        "user",
        "login",
        json!({"user": args.user, "password": password})
    );
    if login["result"] != "ok" {
        bail!("login refused: {login}");
    }
    let subscribed = call!(
        "backend",
        "command",
        "subscribe",
        json!({"event": EVENT,
            "filter": {"CMD_PROD_NAME": args.product, "CMD_PROD_VERSION": args.version}})
    );
    if subscribed["result"] != "ok" {
        bail!("subscription refused: {subscribed}");
    }
    println!(
        "subscribed {}",
        subscribed["data"]["id"].as_str().unwrap_or("")
    );
    loop {
        let message = match waiting.pop_front() {
            Some(message) => message,
            None => match socket.next().await {
                Some(Ok(Message::Text(text))) => serde_json::from_str(&text)?,
                Some(Ok(Message::Close(frame))) => {
                    bail!("the server closed the connection: {frame:?}")
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the server closed the connection"),
            },
        };
        if message["cmd"] != "event" || message["data"]["type"] != EVENT {
            continue;
        }
        let cmd = message["data"]["body"]["CMD_ID"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let payload = call!("backend", "command", "get_payload", json!({"CMD_ID": cmd}));
        if payload["result"] != "ok" {
            eprintln!("{cmd}: no payload: {payload}");
            continue;
        }
        let name = payload["data"]["CMD_NAME"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = run_command(&name, &payload["data"]["CMD_PARAMS"], tokens);
        let answer = match &outcome {
            Ok(result) => call!(
                "backend",
                "command",
                "set_result",
                json!({"CMD_ID": cmd, "result": result})
            ),
            Err(error) => call!(
                "backend",
                "command",
                "set_error",
                json!({"CMD_ID": cmd, "error": error})
            ),
        };
        if answer["result"] != "ok" {
            eprintln!("{cmd}: answer refused: {answer}");
            continue;
        }
        report(&cmd, &name, &outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_set() {
        let tokens = vec![
            (
                "good".to_string(),
                OffsetDateTime::now_utc() + Duration::from_secs(3600),
            ),
            (
                "old".to_string(),
                OffsetDateTime::now_utc() - Duration::from_secs(1),
            ),
        ];
        assert_eq!(
            run_command("ping", &json!({}), &tokens).unwrap()["reply"]["value"],
            "pong"
        );
        let params = json!({"a": typed("int", 1.into())});
        assert_eq!(run_command("echo", &params, &tokens).unwrap(), params);
        let values = json!({"values": typed("array", json!([typed("int", 2.into()), typed("long", 40.into())]))});
        assert_eq!(
            run_command("sum", &values, &tokens).unwrap()["sum"]["value"],
            42
        );
        let check = |token: &str| {
            run_command(
                "check-token",
                &json!({"token": typed("string", token.into())}),
                &tokens,
            )
        };
        assert!(check("good").is_ok());
        assert_eq!(
            check("old").unwrap_err()["CMD_ERR_STR_ID"],
            "ERR_EXPIRED_TOKEN"
        );
        assert_eq!(
            check("nope").unwrap_err()["CMD_ERR_STR_ID"],
            "ERR_UNKNOWN_TOKEN"
        );
        assert_eq!(
            run_command("wipe", &json!({}), &tokens).unwrap_err()["CMD_ERR_STR_ID"],
            "ERR_NOT_SUPPORTED"
        );
    }
}
