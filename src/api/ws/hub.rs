//! The live API's sessions on this node: who is logged in, each session's subscriptions (indexed by
//! object id), its outbound queue, and the commands relayed to it. One dispatcher task follows the
//! bus and hands each event to the sessions whose subscriptions match; a dispatcher that falls
//! behind the bus reads what it missed from the outbox, so no session misses an entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, watch, Notify};

use super::protocol::{self, Code, WsError};
use super::LiveConfig;
use crate::domain::bus::{Bus, BusEvent};
use crate::domain::live::{self, LiveEvent, Selector};
use crate::domain::{backend, Caller, Domain};
use crate::export::gelf::Gelf;

/// Where the dispatcher stands: every entry up to `done` handed out, and the first `count` events
/// of entry `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub done: i64,
    pub seq: i64,
    pub count: usize,
}

impl Place {
    /// Whether event number `index` (from 1) of entry `seq` had been handed out at this place.
    pub fn covers(&self, seq: i64, index: usize) -> bool {
        seq <= self.done || seq == self.seq && index <= self.count
    }
}

/// Each event with its number (from 1) within its outbox entry, as [`Place`] counts them.
fn numbered(events: &[BusEvent]) -> impl Iterator<Item = (&BusEvent, usize)> {
    events.iter().scan((i64::MIN, 0), |at, event| {
        *at = if at.0 == event.seq {
            (event.seq, at.1 + 1)
        } else {
            (event.seq, 1)
        };
        Some((event, at.1))
    })
}

/// One subscription of a session.
pub struct Sub {
    pub selector: Selector,
    pub body: Value,
    /// Where the dispatcher stood when it was made: later events are delivered live.
    pub since: Place,
}

/// What a relayed command's caller hears from the target.
pub enum Relayed {
    Ack,
    Reply { result: Value, data: Value },
}

/// A logged-in connection.
pub struct Session {
    pub id: Arc<str>,
    pub caller: Caller,
    pub remote: String,
    pub meta: Value,
    out: mpsc::Sender<String>,
    capacity: usize,
    /// Set to the reason when the session must close.
    kill: watch::Sender<Option<(u16, String)>>,
    /// While a resume replays history, live events wait here.
    held: Mutex<Option<Vec<String>>>,
    /// Commands relayed to this session, by the server tid they went out under.
    pending: Mutex<HashMap<i64, mpsc::Sender<Relayed>>>,
}

/// Close codes.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_POLICY: u16 = 1008;
/// Most relayed commands waiting on one session at a time.
const MAX_PENDING: usize = 64;

impl Session {
    /// Queues a message; a session whose queue is full is closed (it resumes with `after`).
    pub fn push(&self, frame: String) {
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            if held.len() >= self.capacity {
                self.close(
                    CLOSE_POLICY,
                    "too_many: outbound queue full; resume with after",
                );
            } else {
                held.push(frame);
            }
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.out.try_send(frame) {
            self.close(
                CLOSE_POLICY,
                "too_many: outbound queue full; resume with after",
            );
        }
    }

    /// Queues a message, waiting for room (a session's own replies and replayed history).
    pub async fn send(&self, frame: String) -> bool {
        self.out.send(frame).await.is_ok()
    }

    pub fn close(&self, code: u16, reason: &str) {
        self.kill.send_if_modified(|kill| {
            if kill.is_none() {
                *kill = Some((code, reason.to_string()));
                true
            } else {
                false
            }
        });
    }

    pub fn closed(&self) -> watch::Receiver<Option<(u16, String)>> {
        self.kill.subscribe()
    }

    pub fn is_closed(&self) -> bool {
        self.kill.borrow().is_some()
    }

    /// Hands a client's reply or ack to the relayed command waiting for it (none: an answer to an
    /// event, which nothing waits for).
    pub fn answered(&self, tid: &Value, relayed: Relayed) {
        let Some(tid) = tid.as_i64() else { return };
        let mut pending = self.pending.lock().unwrap();
        match relayed {
            Relayed::Ack => {
                if let Some(waiting) = pending.get(&tid) {
                    let _ = waiting.try_send(Relayed::Ack);
                }
            }
            reply => {
                if let Some(waiting) = pending.remove(&tid) {
                    let _ = waiting.try_send(reply);
                }
            }
        }
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<Arc<str>, Arc<Session>>,
    users: BTreeMap<String, Vec<Arc<str>>>,
    subs: HashMap<Arc<str>, Vec<Sub>>,
    /// Sessions with subscriptions on a specific object id, and how many.
    by_obj: HashMap<String, HashMap<Arc<str>, usize>>,
    /// Sessions with subscriptions on any object id, and how many.
    any_obj: HashMap<Arc<str>, usize>,
    /// Service consoles registered by this node's sessions: console id to session id.
    consoles: HashMap<String, Arc<str>>,
    /// Closed sessions that may be recovered by their user, until when.
    recent: HashMap<String, (String, Instant)>,
    place: Option<Place>,
}

impl State {
    fn index(&mut self, session: &Arc<str>, selector: &Selector, add: bool) {
        let counts = match &selector.obj_id {
            Some(obj) => self.by_obj.entry(obj.clone()).or_default(),
            None => &mut self.any_obj,
        };
        if add {
            *counts.entry(session.clone()).or_insert(0) += 1;
        } else if let Some(n) = counts.get_mut(session) {
            *n -= 1;
            if *n == 0 {
                counts.remove(session);
            }
        }
        if let Some(obj) = &selector.obj_id {
            if self.by_obj.get(obj).is_some_and(|m| m.is_empty()) {
                self.by_obj.remove(obj);
            }
        }
    }
}

pub struct Hub {
    pub domain: Arc<Domain>,
    bus: Arc<Bus>,
    pub config: LiveConfig,
    gelf: Option<Gelf>,
    state: Mutex<State>,
    tids: AtomicI64,
    wake: Notify,
}

impl Hub {
    pub fn new(domain: Arc<Domain>, config: LiveConfig) -> Hub {
        let gelf = config
            .gelf
            .address
            .clone()
            .map(|address| Gelf::new(address, config.gelf.transport));
        Hub {
            bus: domain.bus.clone(),
            domain,
            config,
            gelf,
            state: Mutex::new(State::default()),
            tids: AtomicI64::new(1000),
            wake: Notify::new(),
        }
    }

    /// The server's own tid counter, for events and relayed commands.
    pub fn next_tid(&self) -> i64 {
        self.tids.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn session_count(&self) -> usize {
        self.state.lock().unwrap().sessions.len()
    }

    /// Opens a session for `caller` after a login: a new id, or `wanted` when it recovers a closed
    /// session of the same user. Every session is subscribed to its own user and session events.
    pub fn open(
        &self,
        caller: Caller,
        wanted: Option<String>,
        remote: String,
        meta: Value,
    ) -> Result<(Arc<Session>, mpsc::Receiver<String>), WsError> {
        let mut st = self.state.lock().unwrap();
        let now = Instant::now();
        st.recent.retain(|_, (_, until)| *until > now);
        let id: Arc<str> =
            match wanted {
                Some(id) => {
                    if st.sessions.contains_key(id.as_str()) {
                        return Err(WsError::new(
                            Code::InvalidField,
                            "session_id is in use by a live connection",
                        ));
                    }
                    match st.recent.get(&id) {
                        Some((user, _)) if *user == caller.name => {}
                        _ => return Err(WsError::new(
                            Code::InvalidField,
                            "session_id recovers only a recently closed session of the same user",
                        )),
                    }
                    st.recent.remove(&id);
                    id.into()
                }
                None => uuid::Uuid::new_v4().to_string().into(),
            };
        if st.sessions.len() >= self.config.max_sessions {
            return Err(WsError::new(
                Code::TooMany,
                "too many live sessions on this server",
            ));
        }
        let mine = st.users.get(&caller.name).map_or(0, Vec::len);
        if mine >= self.config.max_sessions_per_user {
            return Err(WsError::new(
                Code::TooMany,
                format!(
                    "{} sessions of this user are open already",
                    self.config.max_sessions_per_user
                ),
            ));
        }
        let capacity = self.config.queue_messages.max(1);
        let (out, rx) = mpsc::channel(capacity);
        let session = Arc::new(Session {
            id: id.clone(),
            remote,
            meta,
            out,
            capacity,
            kill: watch::channel(None).0,
            held: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            caller,
        });
        let start = Place {
            done: i64::MIN,
            seq: i64::MIN,
            count: 0,
        };
        let auto = [
            ("session_event", id.to_string()),
            ("user_event", session.caller.name.clone()),
        ]
        .map(|(subclass, obj)| Sub {
            selector: Selector {
                class: Some("core".into()),
                subclass: Some(subclass.into()),
                kind: None,
                obj_id: Some(obj),
            },
            body: Value::Object(Map::new()),
            since: start,
        });
        for sub in &auto {
            st.index(&id, &sub.selector, true);
        }
        st.subs.insert(id.clone(), auto.into());
        st.users
            .entry(session.caller.name.clone())
            .or_default()
            .push(id.clone());
        st.sessions.insert(id, session.clone());
        drop(st);
        self.wake.notify_one();
        Ok((session, rx))
    }

    /// Forgets a closed session: its subscriptions go, commands waiting on it fail, and its id may
    /// be recovered by its user for a while.
    /// Forgets a closed session; returns the service consoles it had registered, which are gone.
    pub fn close(&self, session: &Arc<Session>) -> Vec<String> {
        let mut st = self.state.lock().unwrap();
        if st.sessions.remove(&session.id).is_none() {
            return Vec::new();
        }
        let consoles: Vec<String> = st
            .consoles
            .iter()
            .filter(|(_, owner)| **owner == session.id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &consoles {
            st.consoles.remove(id);
        }
        for sub in st.subs.remove(&session.id).unwrap_or_default() {
            st.index(&session.id, &sub.selector, false);
        }
        if let Some(ids) = st.users.get_mut(&session.caller.name) {
            ids.retain(|id| *id != session.id);
            if ids.is_empty() {
                st.users.remove(&session.caller.name);
            }
        }
        let until = Instant::now() + Duration::from_secs(self.config.recover_minutes * 60);
        st.recent
            .insert(session.id.to_string(), (session.caller.name.clone(), until));
        drop(st);
        session.pending.lock().unwrap().clear();
        consoles
    }

    /// Notes that `session` holds the service console `id`: its commands' events go to it.
    pub fn add_console(&self, session: &Session, id: String) {
        self.state
            .lock()
            .unwrap()
            .consoles
            .insert(id, session.id.clone());
    }

    /// Forgets the service console `id` if `session` holds it.
    pub fn remove_console(&self, session: &Session, id: &str) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.consoles.get(id) == Some(&session.id) {
            st.consoles.remove(id);
            true
        } else {
            false
        }
    }

    /// The service consoles `session` holds.
    pub fn consoles_of(&self, session: &Session) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.consoles
            .iter()
            .filter(|(_, owner)| **owner == session.id)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Pushes a backend command's `KLSRV_EV_PROD_BACKEND_CMD` event to the session holding the
    /// console it was routed to, if that is here, once it is marked delivered.
    fn push_command(&self, st: &State, event: &BusEvent) {
        let Some(payload) = &event.payload else {
            return;
        };
        let text = |name: &str| {
            payload
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (Some(console), Some(id)) = (text("console"), text("CMD_ID")) else {
            return;
        };
        let Some(session) = st.consoles.get(&console).and_then(|s| st.sessions.get(s)) else {
            return;
        };
        let live = LiveEvent {
            class: "backend".into(),
            subclass: Some("command".into()),
            kind: Some(backend::EVENT.into()),
            obj_id: Some(id.clone()),
            body: Some(backend::event_body(
                &id,
                &text("CMD_PROD_NAME").unwrap_or_default(),
                &text("CMD_PROD_VERSION").unwrap_or_default(),
            )),
            seq: Some(event.seq),
            at: Some(event.at),
            area: None,
        };
        let frame = protocol::event(self.next_tid(), live.data(&[]));
        let (domain, session) = (self.domain.clone(), session.clone());
        tokio::spawn(async move {
            match domain.backend_delivered(&id, &console).await {
                Ok(true) => session.push(frame),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(command = %id, error = %e, "cannot mark a backend command delivered");
                }
            }
        });
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.state.lock().unwrap().sessions.get(id).cloned()
    }

    /// `core/user/list`: every user with live sessions (an administrator), or the caller alone.
    pub fn users(&self, caller: &Caller) -> Value {
        let st = self.state.lock().unwrap();
        let mut out = Map::new();
        for (user, ids) in &st.users {
            if caller.may_act_on(user).is_ok() {
                out.insert(
                    user.clone(),
                    ids.iter().map(|id| Value::from(id.to_string())).collect(),
                );
            }
        }
        Value::Object(out)
    }

    /// `core/user/get`: the user's live sessions with their metadata.
    pub fn user(&self, user: &str) -> Value {
        let st = self.state.lock().unwrap();
        let mut out = Map::new();
        for id in st.users.get(user).into_iter().flatten() {
            let Some(s) = st.sessions.get(id) else {
                continue;
            };
            out.insert(
                id.to_string(),
                json!({"remote": s.remote, "type": "api_server", "meta": s.meta}),
            );
        }
        Value::Object(out)
    }

    /// Sends a `core` event to the live sessions of `targets` whose subscriptions match it.
    pub fn send_core(&self, targets: Vec<Arc<Session>>, event: &LiveEvent) {
        let st = self.state.lock().unwrap();
        for session in targets {
            let Some(subs) = st.subs.get(&session.id) else {
                continue;
            };
            let bodies: Vec<&Value> = subs
                .iter()
                .filter(|s| s.selector.matches(event))
                .map(|s| &s.body)
                .collect();
            if !bodies.is_empty() {
                session.push(protocol::event(self.next_tid(), event.data(&bodies)));
            }
        }
    }

    /// The live sessions of `user`.
    pub fn sessions_of(&self, user: &str) -> Vec<Arc<Session>> {
        let st = self.state.lock().unwrap();
        st.users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| st.sessions.get(id).cloned())
            .collect()
    }

    /// Adds a subscription (or, for one already there, replaces its body). Returns where the
    /// dispatcher stood, for a resume, and whether it is new.
    pub fn subscribe(
        &self,
        session: &Session,
        selector: Selector,
        body: Value,
    ) -> Result<(Place, bool), WsError> {
        let mut st = self.state.lock().unwrap();
        let place = st.place.unwrap_or(Place {
            done: self.bus.head(),
            seq: i64::MIN,
            count: 0,
        });
        let subs = st.subs.entry(session.id.clone()).or_default();
        if let Some(existing) = subs.iter_mut().find(|s| s.selector == selector) {
            existing.body = body;
            return Ok((place, false));
        }
        if subs.len() >= self.config.max_subscriptions + 2 {
            return Err(WsError::new(
                Code::TooMany,
                format!(
                    "a session holds at most {} subscriptions",
                    self.config.max_subscriptions
                ),
            ));
        }
        subs.push(Sub {
            selector: selector.clone(),
            body,
            since: place,
        });
        st.index(&session.id, &selector, true);
        Ok((place, true))
    }

    /// Removes the subscription with exactly these fields; false when there is none.
    pub fn unsubscribe(&self, session: &Session, selector: &Selector) -> bool {
        let mut st = self.state.lock().unwrap();
        let Some(subs) = st.subs.get_mut(&session.id) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|s| s.selector != *selector);
        if subs.len() == before {
            return false;
        }
        st.index(&session.id, selector, false);
        true
    }

    pub fn subscriptions(&self, session: &Session) -> Value {
        let st = self.state.lock().unwrap();
        st.subs
            .get(&session.id)
            .into_iter()
            .flatten()
            .map(|s| s.selector.to_json(&s.body))
            .collect()
    }

    /// Relays a command to `target` under a fresh server tid; the channel hears its ack(s) and
    /// its answer.
    pub fn relay(
        &self,
        target: &Session,
        request: Value,
    ) -> Result<(i64, mpsc::Receiver<Relayed>), WsError> {
        let tid = self.next_tid();
        let (tx, rx) = mpsc::channel(8);
        {
            let mut pending = target.pending.lock().unwrap();
            if pending.len() >= MAX_PENDING {
                return Err(WsError::new(
                    Code::TooMany,
                    "the target session has too many commands waiting",
                ));
            }
            pending.insert(tid, tx);
        }
        let mut request = request;
        request["tid"] = tid.into();
        target.push(request.to_string());
        Ok((tid, rx))
    }

    /// Gives up on a relayed command.
    pub fn forget(&self, target: &Session, tid: i64) {
        target.pending.lock().unwrap().remove(&tid);
    }

    /// Sends a `core/session/log` message to the GELF server, or to the server's own log when none
    /// is configured.
    pub async fn log(&self, session: &Session, data: &Map<String, Value>) -> Result<(), WsError> {
        let now = time::OffsetDateTime::now_utc();
        let stamp = now.unix_timestamp() as f64 + f64::from(now.millisecond()) / 1000.0;
        let message = crate::export::gelf::message(data, &session.caller.name, &session.id, stamp)
            .map_err(|e| match e {
                crate::export::gelf::GelfError::Missing(f) => {
                    WsError::new(Code::MissingField, format!("{f} is missing"))
                }
                crate::export::gelf::GelfError::Invalid(m) => WsError::new(Code::InvalidField, m),
            })?;
        match &self.gelf {
            Some(gelf) => {
                if let Err(e) = gelf.send(&message).await {
                    tracing::warn!(error = %e, "log message not sent to the GELF server");
                    return Err(WsError::new(
                        Code::Unavailable,
                        "the log server cannot be reached now",
                    ));
                }
            }
            None => tracing::info!(gelf = %message, "client log"),
        }
        Ok(())
    }

    /// Hands one bus event to the matching sessions, and moves the dispatcher's place.
    fn dispatch(&self, event: &BusEvent) {
        let mut st = self.state.lock().unwrap();
        let place = st.place.get_or_insert(Place {
            done: event.seq - 1,
            seq: event.seq,
            count: 0,
        });
        if place.seq == event.seq {
            place.count += 1;
        } else {
            place.done = place.done.max(place.seq);
            place.seq = event.seq;
            place.count = 1;
        }
        if event.topic == "backend.command" {
            self.push_command(&st, event);
            return;
        }
        let Some(live) = live::from_bus(event) else {
            return;
        };
        let mut seen = HashSet::new();
        let by_obj = live
            .obj_id
            .as_ref()
            .and_then(|obj| st.by_obj.get(obj))
            .into_iter()
            .flat_map(|m| m.keys());
        for id in by_obj.chain(st.any_obj.keys()) {
            if !seen.insert(id.clone()) {
                continue;
            }
            let (Some(session), Some(subs)) = (st.sessions.get(id), st.subs.get(id)) else {
                continue;
            };
            if !session.caller.may_see(&live) {
                continue;
            }
            let bodies: Vec<&Value> = subs
                .iter()
                .filter(|s| s.selector.matches(&live))
                .map(|s| &s.body)
                .collect();
            if !bodies.is_empty() {
                session.push(protocol::event(self.next_tid(), live.data(&bodies)));
            }
        }
    }

    /// Reads the outbox after `after` and dispatches it, skipping what `skip` covers; returns the
    /// last entry read.
    async fn catch_up(&self, mut after: i64, skip: Option<Place>) -> crate::domain::Result<i64> {
        loop {
            let batch = self.bus.history(after, 500).await?;
            let Some(through) = batch.through else {
                return Ok(after);
            };
            for (event, index) in numbered(&batch.events) {
                if skip.is_some_and(|p| p.covers(event.seq, index)) {
                    continue;
                }
                self.dispatch(event);
            }
            after = through;
        }
    }

    /// Follows the bus while sessions are open, until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            while self.session_count() == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = stop.changed() => return,
                }
                if *stop.borrow() {
                    return;
                }
            }
            // Entries up to the head were handed out before this subscription; the ones after
            // it may have been too, so they are read from the outbox, and skipped when they
            // arrive live.
            let start = self.bus.head();
            let mut live = self.bus.subscribe();
            self.state.lock().unwrap().place = Some(Place {
                done: start,
                seq: start,
                count: usize::MAX,
            });
            let mut through = self.recover(start, None, &mut stop).await;
            loop {
                if *stop.borrow() {
                    return;
                }
                let received = tokio::select! {
                    received = live.recv() => received,
                    _ = stop.changed() => continue,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {
                        if self.session_count() == 0 {
                            break;
                        }
                        continue;
                    }
                };
                match received {
                    Ok(event) if event.seq <= through => {}
                    Ok(event) => self.dispatch(&event),
                    Err(broadcast::error::RecvError::Lagged(lost)) => {
                        tracing::warn!(
                            lost,
                            "the live API fell behind the bus; reading the outbox"
                        );
                        let place = self.state.lock().unwrap().place;
                        let from = place.map_or(through, |p| p.done);
                        through = through.max(self.recover(from, place, &mut stop).await);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            self.state.lock().unwrap().place = None;
        }
    }

    /// [`Hub::catch_up`], retried until it succeeds or the server stops.
    async fn recover(
        &self,
        from: i64,
        skip: Option<Place>,
        stop: &mut watch::Receiver<bool>,
    ) -> i64 {
        loop {
            match self.catch_up(from, skip).await {
                Ok(through) => return through,
                Err(e) => {
                    tracing::warn!(error = %e, "the live API cannot read the outbox; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return from,
                    }
                }
            }
        }
    }

    /// Replays what `session`'s new subscription `index` missed after `after`, up to where the
    /// dispatcher stood when it was made, then lets live events through again. Events another of
    /// its subscriptions already delivered are not sent twice.
    pub async fn resume(
        &self,
        session: &Session,
        selector: &Selector,
        after: i64,
        since: Place,
    ) -> Result<(), WsError> {
        *session.held.lock().unwrap() = Some(Vec::new());
        let replayed = self.replay(session, selector, after, since).await;
        let mut held = session.held.lock().unwrap();
        for frame in held.take().unwrap_or_default() {
            if let Err(mpsc::error::TrySendError::Full(_)) = session.out.try_send(frame) {
                session.close(
                    CLOSE_POLICY,
                    "too_many: outbound queue full; resume with after",
                );
                break;
            }
        }
        replayed
    }

    async fn replay(
        &self,
        session: &Session,
        selector: &Selector,
        mut after: i64,
        since: Place,
    ) -> Result<(), WsError> {
        let others: Vec<(Selector, Place)> = {
            let st = self.state.lock().unwrap();
            st.subs
                .get(&session.id)
                .into_iter()
                .flatten()
                .filter(|s| s.selector != *selector)
                .map(|s| (s.selector.clone(), s.since))
                .collect()
        };
        let body = {
            let st = self.state.lock().unwrap();
            st.subs
                .get(&session.id)
                .and_then(|subs| subs.iter().find(|s| s.selector == *selector))
                .map(|s| s.body.clone())
                .unwrap_or(Value::Null)
        };
        let last = since.seq.max(since.done);
        while after < last {
            let batch = self.bus.history(after, 500).await?;
            let Some(through) = batch.through else {
                break;
            };
            for (event, index) in numbered(&batch.events) {
                if !since.covers(event.seq, index) {
                    return Ok(());
                }
                let Some(live) = live::from_bus(event) else {
                    continue;
                };
                if !selector.matches(&live) || !session.caller.may_see(&live) {
                    continue;
                }
                let delivered = others
                    .iter()
                    .any(|(s, at)| s.matches(&live) && !at.covers(event.seq, index));
                if delivered {
                    continue;
                }
                let frame = protocol::event(self.next_tid(), live.data(&[&body]));
                if session.is_closed() || !session.send(frame).await {
                    return Ok(());
                }
            }
            after = through;
        }
        Ok(())
    }
}
