//! A client of the live API (seed 003) over real WSS: requests with tids, replies matched by tid,
//! events kept in arrival order.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::TestServer;

pub struct Ws {
    pub socket: WebSocketStream<TlsStream<TcpStream>>,
    next_tid: i64,
    /// Messages that were not the reply being waited for (events, relayed commands, acks).
    pub inbox: VecDeque<Value>,
    /// Set once the server closed the connection: its code and reason.
    pub closed: Option<(u16, String)>,
}

const WAIT: Duration = Duration::from_secs(10);

impl Ws {
    pub async fn connect(server: &TestServer) -> Ws {
        Ws::connect_with(server, &[]).await
    }

    /// Connects with extra headers on the upgrade request (a cookie).
    pub async fn connect_with(server: &TestServer, headers: &[(&str, &str)]) -> Ws {
        Ws::connect_to(&server.connector, server.app.admin_addr(), headers).await
    }

    /// Connects to the admin port at `addr`, trusting what `connector` trusts.
    pub async fn connect_to(
        connector: &tokio_rustls::TlsConnector,
        addr: std::net::SocketAddr,
        headers: &[(&str, &str)],
    ) -> Ws {
        let stream = super::connect_tls(connector, addr).await;
        let mut request = "wss://localhost/api/v1/ws".into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("websocket upgrade");
        assert_eq!(response.status(), 101);
        Ws {
            socket,
            next_tid: 0,
            inbox: VecDeque::new(),
            closed: None,
        }
    }

    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// The next JSON message, or `None` when the connection closed (or nothing came in `wait`).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let message = match tokio::time::timeout(wait, self.socket.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(m))) => m,
            };
            match message {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Close(frame) => {
                    self.closed = Some(
                        frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new())),
                    );
                    return None;
                }
                _ => continue,
            }
        }
    }

    /// Sends a request of class `core` and waits for the reply with its tid.
    pub async fn call(&mut self, subclass: &str, cmd: &str, data: Value) -> Value {
        self.call_in("core", subclass, cmd, data).await
    }

    /// Sends a request of `class` and waits for the reply with its tid.
    pub async fn call_in(&mut self, class: &str, subclass: &str, cmd: &str, data: Value) -> Value {
        let tid = self.send_request(class, subclass, cmd, data).await;
        self.reply(tid).await
    }

    /// Sends a request without waiting for its reply; returns its tid.
    pub async fn send_request(
        &mut self,
        class: &str,
        subclass: &str,
        cmd: &str,
        data: Value,
    ) -> i64 {
        self.next_tid += 1;
        let tid = self.next_tid;
        let request =
            json!({"class": class, "subclass": subclass, "cmd": cmd, "data": data, "tid": tid});
        self.send_text(request.to_string()).await;
        tid
    }

    /// Waits for the reply with `tid`, keeping other messages.
    pub async fn reply(&mut self, tid: i64) -> Value {
        loop {
            let got = self
                .next_within(WAIT)
                .await
                .unwrap_or_else(|| panic!("no reply to tid {tid}: closed {:?}", self.closed));
            if got.get("tid") == Some(&json!(tid)) && got.get("result").is_some() {
                return got;
            }
            self.inbox.push_back(got);
        }
    }

    /// Logs in with a password; returns the session id.
    pub async fn login(&mut self, user: &str, password: &str) -> String {
        let reply = self
            .call("user", "login", json!({"user": user, "password": password}))
            .await;
        assert_eq!(reply["result"], "ok", "{reply}");
        reply["data"]["session_id"].as_str().unwrap().to_string()
    }

    /// The next message the server pushed (an event, a relayed command, an ack).
    pub async fn pushed(&mut self) -> Value {
        if let Some(v) = self.inbox.pop_front() {
            return v;
        }
        self.next_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("nothing pushed: closed {:?}", self.closed))
    }

    /// The next pushed event's data.
    pub async fn event(&mut self) -> Value {
        let got = self.pushed().await;
        assert_eq!(
            (&got["class"], &got["cmd"]),
            (&json!("core"), &json!("event")),
            "{got}"
        );
        got["data"].clone()
    }

    /// Asserts nothing is pushed within `ms` milliseconds.
    pub async fn nothing_for(&mut self, ms: u64) {
        assert!(self.inbox.is_empty(), "{:?}", self.inbox);
        if let Some(v) = self.next_within(Duration::from_millis(ms)).await {
            panic!("unexpected message {v}");
        }
    }

    /// Waits until the server closes the connection; its close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        while self.closed.is_none() {
            if self.next_within(WAIT).await.is_none() && self.closed.is_none() {
                return (1006, String::new());
            }
        }
        self.closed.clone().unwrap()
    }
}

/// An error reply's code.
pub fn code(reply: &Value) -> &str {
    assert_eq!(reply["result"], "error", "{reply}");
    assert!(
        reply["data"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{reply}"
    );
    reply["data"]["code"].as_str().unwrap()
}
