//! One WebSocket connection: the login deadline, then a reader that answers requests in order and a
//! writer that drains the session's queue, pings, and closes with a reason when told to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::hub::{Hub, Relayed, Session, CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY};
use super::protocol::{self, Code, Incoming, Request, WsError};
use crate::domain::live::{self, Credential, LiveEvent};
use crate::domain::Caller;
use crate::server::listener::ConnectionHold;

/// Login fields that are not kept as session metadata.
const LOGIN_FIELDS: [&str; 4] = ["user", "password", "token", "session_id"];

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_string()),
    }))
}

/// Serves one upgraded connection until it closes.
pub async fn run(
    hub: Arc<Hub>,
    socket: WebSocket,
    peer: SocketAddr,
    cookie: Option<String>,
    hold: Option<ConnectionHold>,
) {
    let (mut sink, mut stream) = socket.split();
    let closing = async {
        match &hold {
            Some(hold) => hold.closing().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(closing);
    let login = tokio::select! {
        login = login(&hub, &mut sink, &mut stream, peer, cookie.as_deref()) => login,
        _ = tokio::time::sleep(Duration::from_secs(hub.config.login_timeout_secs)) => {
            let _ = sink.send(close_frame(CLOSE_POLICY, "not_logged_in: login deadline passed")).await;
            return;
        }
        _ = &mut closing => {
            let _ = sink.send(close_frame(CLOSE_GOING_AWAY, "the server is stopping")).await;
            return;
        }
    };
    let Some((session, queue)) = login else {
        return;
    };
    tracing::info!(user = %session.caller.name, session = %session.id, %peer, "live session opened");
    let writer = tokio::spawn(write(hub.clone(), session.clone(), sink, queue));
    let reason = read(&hub, &session, &mut stream, closing).await;
    if let Some((code, text)) = reason {
        session.close(code, &text);
    }
    for console in hub.close(&session) {
        if let Err(e) = hub
            .domain
            .console_gone(&console, crate::domain::backend::Gone::Disconnected)
            .await
        {
            tracing::warn!(console = %console, error = %e, "cannot settle a closed console's commands");
        }
    }
    let _ = writer.await;
    tracing::info!(user = %session.caller.name, session = %session.id, "live session closed");
}

/// Waits for a successful `core/user/login`, answering anything else with an error.
async fn login(
    hub: &Hub,
    sink: &mut Sink,
    stream: &mut Stream,
    peer: SocketAddr,
    cookie: Option<&str>,
) -> Option<(Arc<Session>, mpsc::Receiver<String>)> {
    loop {
        let text = match stream.next().await? {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(_)) => {
                let e = WsError::new(Code::InvalidField, "messages are JSON text");
                sink.send(Message::text(protocol::error(&Value::Null, &e)))
                    .await
                    .ok()?;
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        };
        let request = match protocol::parse(&text) {
            Ok(Incoming::Request(r)) => r,
            Ok(_) => continue,
            Err((tid, e)) => {
                sink.send(Message::text(protocol::error(&tid, &e)))
                    .await
                    .ok()?;
                continue;
            }
        };
        let is_login = request.class == "core"
            && request.subclass.as_deref() == Some("user")
            && request.cmd == "login";
        let answer = if is_login {
            match authenticate(hub, &request.data, peer, cookie).await {
                Ok((caller, wanted, meta)) => {
                    match hub.open(caller, wanted, format!("wss:{peer}"), meta) {
                        Ok((session, queue)) => {
                            let reply =
                                protocol::ok(&request.tid, json!({"session_id": &*session.id}));
                            if sink.send(Message::text(reply)).await.is_err() {
                                hub.close(&session);
                                return None;
                            }
                            return Some((session, queue));
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            }
        } else {
            WsError::new(Code::NotLoggedIn, "log in first: core/user/login")
        };
        sink.send(Message::text(protocol::error(&request.tid, &answer)))
            .await
            .ok()?;
    }
}

/// Checks a login's credentials: `user` with `password` (an admin account), or with `token` (a
/// REST API token of that account), or the `api_access_token` cookie sent with the upgrade.
async fn authenticate(
    hub: &Hub,
    data: &Map<String, Value>,
    peer: SocketAddr,
    cookie: Option<&str>,
) -> Result<(Caller, Option<String>, Value), WsError> {
    let user = live::required(data, "user")?;
    let text = |name: &str| protocol::text(data, name);
    let wanted = text("session_id")?;
    if let Some(id) = &wanted {
        if id.is_empty() || id.len() > 64 {
            return Err(WsError::new(
                Code::InvalidField,
                "session_id is 1 to 64 characters",
            ));
        }
    }
    let (password, token) = (text("password")?, text("token")?);
    let credential = match (&password, &token, cookie) {
        (Some(password), _, _) => Credential::Password(password),
        (None, Some(token), _) => Credential::Token(token),
        (None, None, Some(token)) => Credential::Token(token),
        (None, None, None) => {
            return Err(WsError::new(
                Code::MissingField,
                "password is missing (or a token)",
            ))
        }
    };
    let caller = hub
        .domain
        .live_login(&user, credential, Some(peer.ip()))
        .await?;
    let meta: Map<String, Value> = data
        .iter()
        .filter(|(k, _)| !LOGIN_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((caller, wanted, Value::Object(meta)))
}

/// Drains the session's queue to the socket, pings, and closes with the session's reason.
async fn write(
    hub: Arc<Hub>,
    session: Arc<Session>,
    mut sink: Sink,
    mut queue: mpsc::Receiver<String>,
) {
    let mut closed = session.closed();
    let mut ping = tokio::time::interval(Duration::from_secs(hub.config.ping_secs.max(1)));
    ping.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = closed.changed() => {
                let (code, reason) = closed.borrow().clone().unwrap_or((CLOSE_NORMAL, String::new()));
                let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(close_frame(code, &reason))).await;
                return;
            }
            frame = queue.recv() => match frame {
                Some(frame) => {
                    if sink.send(Message::text(frame)).await.is_err() {
                        session.close(CLOSE_NORMAL, "");
                        return;
                    }
                }
                None => return,
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    session.close(CLOSE_NORMAL, "");
                    return;
                }
            }
        }
    }
}

/// Reads requests until the connection closes, goes idle, or the session is closed; returns the
/// close reason the reader decided on.
async fn read(
    hub: &Arc<Hub>,
    session: &Arc<Session>,
    stream: &mut Stream,
    mut closing: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<(u16, String)> {
    let idle = Duration::from_secs(hub.config.idle_timeout_secs.max(1));
    let mut closed = session.closed();
    loop {
        let message = tokio::select! {
            message = tokio::time::timeout(idle, stream.next()) => message,
            _ = closed.changed() => return None,
            _ = &mut closing => return Some((CLOSE_GOING_AWAY, "the server is stopping".into())),
        };
        let text = match message {
            Err(_) => return Some((CLOSE_POLICY, "idle: nothing received in time".into())),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "live connection failed");
                let too_big =
                    e.to_string().contains("too long") || e.to_string().contains("too big");
                return too_big.then(|| (1009, "message too big".into()));
            }
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Binary(_)))) => {
                let e = WsError::new(Code::InvalidField, "messages are JSON text");
                session.send(protocol::error(&Value::Null, &e)).await;
                continue;
            }
            Ok(Some(Ok(_))) => continue,
        };
        match protocol::parse(&text) {
            Ok(Incoming::Request(request)) => {
                let tid = request.tid.clone();
                let reply = match handle(hub, session, request).await {
                    Ok(Some(data)) => protocol::ok(&tid, data),
                    Ok(None) => continue,
                    Err(e) => protocol::error(&tid, &e),
                };
                if !session.send(reply).await {
                    return None;
                }
            }
            Ok(Incoming::Reply { tid, result, data }) => {
                session.answered(&tid, Relayed::Reply { result, data })
            }
            Ok(Incoming::Ack { tid }) => session.answered(&tid, Relayed::Ack),
            Err((tid, e)) => {
                session.send(protocol::error(&tid, &e)).await;
            }
        }
    }
}

/// An event's fields as a client sends them: `"*"` or absent leaves a field out.
fn sent_event(
    data: &Map<String, Value>,
    class: &str,
    subclass: &str,
    obj_id: String,
) -> Result<LiveEvent, WsError> {
    let body = live::body(data);
    Ok(LiveEvent {
        class: class.into(),
        subclass: Some(subclass.into()),
        kind: live::field(data, "type")?,
        obj_id: Some(obj_id),
        body: (body != Value::Object(Map::new())).then_some(body),
        seq: None,
        at: None,
        area: None,
    })
}

/// Answers one request after login: `Ok(Some(data))` is an ok reply, `Ok(None)` a reply sent later
/// (a relayed command).
async fn handle(
    hub: &Arc<Hub>,
    session: &Arc<Session>,
    request: Request,
) -> Result<Option<Value>, WsError> {
    let data = &request.data;
    let caller = &session.caller;
    if request.class == "backend" {
        return super::backend::handle(hub, session, request).await;
    }
    if request.class != "core" {
        return Err(WsError::new(
            Code::NotFound,
            format!(
                "no class {:?}: the commands are of classes core and backend",
                request.class
            ),
        ));
    }
    match (
        request.subclass.as_deref().unwrap_or(""),
        request.cmd.as_str(),
    ) {
        ("user", "login") => Err(WsError::new(Code::InvalidField, "already logged in")),
        ("user", "list") => Ok(Some(hub.users(caller))),
        ("user", "get") => {
            let user = live::required(data, "user")?;
            caller.may_act_on(&user)?;
            Ok(Some(hub.user(&user)))
        }
        ("user", "send_event") => {
            let user = live::required(data, "user")?;
            caller.may_act_on(&user)?;
            let event = sent_event(data, "core", "user_event", user.clone())?;
            hub.send_core(hub.sessions_of(&user), &event);
            Ok(Some(Value::Null))
        }
        ("session", "stop") => {
            let target = target(hub, caller, data)?;
            target.close(CLOSE_NORMAL, &format!("stopped by {}", caller.name));
            Ok(Some(Value::Null))
        }
        ("session", "send_event") => {
            let target = target(hub, caller, data)?;
            let event = sent_event(data, "core", "session_event", target.id.to_string())?;
            hub.send_core(vec![target], &event);
            Ok(Some(Value::Null))
        }
        ("session", "cmd") => {
            let class = live::required(data, "class")?;
            let cmd = live::required(data, "cmd")?;
            let target = target(hub, caller, data)?;
            let mut relayed =
                json!({"class": class, "cmd": cmd, "data": live::body_of(data, "data")});
            if let Some(subclass) = live::field(data, "subclass")? {
                relayed["subclass"] = subclass.into();
            }
            let (tid, answers) = hub.relay(&target, relayed)?;
            tokio::spawn(wait_for_answer(
                hub.clone(),
                session.clone(),
                target,
                tid,
                request.tid.clone(),
                answers,
            ));
            Ok(None)
        }
        ("session", "log") => {
            hub.log(session, data).await?;
            Ok(Some(Value::Null))
        }
        ("event", "subscribe") => {
            let selector = live::selector(data)?;
            hub.domain.authorize_subscription(caller, &selector)?;
            let after = match data.get("after") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().filter(|a| *a >= 0).ok_or_else(|| {
                    WsError::new(
                        Code::InvalidField,
                        "after is a bus sequence number (an integer)",
                    )
                })?),
            };
            let (since, new) = hub.subscribe(session, selector.clone(), live::body(data))?;
            if let (Some(after), true) = (after, new) {
                hub.resume(session, &selector, after, since).await?;
            }
            Ok(Some(Value::Null))
        }
        ("event", "unsubscribe") => {
            let selector = live::selector(data)?;
            if hub.unsubscribe(session, &selector) {
                Ok(Some(Value::Null))
            } else {
                Err(WsError::new(
                    Code::NotFound,
                    "no subscription with exactly these fields",
                ))
            }
        }
        ("event", "get_subscriptions") => Ok(Some(hub.subscriptions(session))),
        ("event", "send_event" | "send") => {
            live::check_service(data)?;
            let class = live::required(data, "class")?;
            let body = live::body(data);
            let event = LiveEvent {
                class,
                subclass: live::field(data, "subclass")?,
                kind: live::field(data, "type")?,
                obj_id: live::field(data, "obj_id")?,
                body: (body != Value::Object(Map::new())).then_some(body),
                seq: None,
                at: None,
                area: None,
            };
            hub.domain.publish_live(caller, &event).await?;
            Ok(Some(Value::Null))
        }
        (subclass, cmd) => Err(WsError::new(
            Code::NotFound,
            format!("no command core/{subclass}/{cmd}"),
        )),
    }
}

/// The live session a request names in `session_id`, if the caller may act on it.
fn target(hub: &Hub, caller: &Caller, data: &Map<String, Value>) -> Result<Arc<Session>, WsError> {
    let id = live::required(data, "session_id")?;
    let target = hub
        .session(&id)
        .ok_or_else(|| WsError::new(Code::NotFound, "no live session with this session_id"))?;
    caller.may_act_on(&target.caller.name)?;
    Ok(target)
}

/// Waits for the target's answer to a relayed command (each ack extends the deadline) and passes
/// it to the caller under the caller's tid.
async fn wait_for_answer(
    hub: Arc<Hub>,
    caller: Arc<Session>,
    target: Arc<Session>,
    tid: i64,
    caller_tid: Value,
    mut answers: mpsc::Receiver<Relayed>,
) {
    let mut deadline =
        tokio::time::Instant::now() + Duration::from_secs(hub.config.cmd_timeout_secs);
    let mut target_closed = target.closed();
    let reply = loop {
        tokio::select! {
            answer = answers.recv() => match answer {
                Some(Relayed::Ack) => {
                    deadline = tokio::time::Instant::now() + Duration::from_secs(hub.config.ack_extend_secs);
                    caller.push(protocol::ack(&caller_tid));
                }
                Some(Relayed::Reply { result, data }) => {
                    let mut reply = json!({"result": result, "tid": caller_tid});
                    if !data.is_null() {
                        reply["data"] = data;
                    }
                    break reply.to_string();
                }
                None => break protocol::error(&caller_tid, &WsError::new(Code::NotFound, "the target session closed before answering")),
            },
            _ = target_closed.wait_for(Option::is_some) => {
                break protocol::error(&caller_tid, &WsError::new(Code::NotFound, "the target session closed before answering"));
            }
            _ = tokio::time::sleep_until(deadline) => {
                break protocol::error(&caller_tid, &WsError::new(Code::Timeout, "the target session did not answer in time"));
            }
        }
    };
    hub.forget(&target, tid);
    caller.send(reply).await;
}
