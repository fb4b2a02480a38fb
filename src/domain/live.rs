//! The live event API's rules (seed 003): what a subscription matches, which bus entries become
//! which live events, and who may see and do what. The WebSocket surface (`api::ws`) keeps the
//! sessions and the sockets; every decision it makes about an event or a caller is asked here.

use serde_json::{Map, Value};

use super::bus::BusEvent;
use super::rights::{Access, Caller, FuncArea, Role};
use super::{Domain, DomainError, Result};

/// The value that stands for "any" in a subscription and for "none" in a sent event.
pub const ANY: &str = "*";
/// Our one service: `service` in a request must be absent or this.
pub const SERVICE: &str = "mobile-admin";
/// Classes only the server sends events of.
const RESERVED_CLASSES: [&str; 3] = ["core", "mdm", "intake"];
/// Longest class, subclass, type or object id.
const MAX_FIELD_CHARS: usize = 256;

/// What a live API login proves itself with.
pub enum Credential<'a> {
    Password(&'a str),
    Token(&'a str),
}

/// An event as the live API delivers it. `None` fields are left out of the message.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub class: String,
    pub subclass: Option<String>,
    pub kind: Option<String>,
    pub obj_id: Option<String>,
    pub body: Option<Value>,
    /// The bus entry it comes from, for resuming (`after`); none for events between sessions.
    pub seq: Option<i64>,
    /// When that entry was committed.
    pub at: Option<time::OffsetDateTime>,
    /// Whose Read right it needs; none for events clients send each other.
    pub area: Option<FuncArea>,
}

impl LiveEvent {
    /// The `data` of the delivered `core/event` message, with the bodies of the subscriptions it
    /// matched merged under its own (the event's value wins on a key).
    pub fn data(&self, merged: &[&Value]) -> Value {
        let mut data = Map::new();
        data.insert("class".into(), self.class.clone().into());
        for (name, value) in [
            ("subclass", &self.subclass),
            ("type", &self.kind),
            ("obj_id", &self.obj_id),
        ] {
            if let Some(value) = value {
                data.insert(name.into(), value.clone().into());
            }
        }
        let mut body = None;
        for extra in merged {
            if let Value::Object(extra) = extra {
                if !extra.is_empty() {
                    let into = body.get_or_insert_with(Map::new);
                    into.extend(extra.clone());
                }
            }
        }
        let body = match (&self.body, body) {
            (Some(Value::Object(own)), Some(mut under)) => {
                under.extend(own.clone());
                Some(Value::Object(under))
            }
            (None, Some(under)) => Some(Value::Object(under)),
            (Some(own), _) => Some(own.clone()),
            (None, None) => None,
        };
        if let Some(body) = body {
            if body != Value::Object(Map::new()) {
                data.insert("body".into(), body);
            }
        }
        if let Some(seq) = self.seq {
            data.insert("seq".into(), seq.into());
        }
        if let Some(at) = self.at.and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        }) {
            data.insert("at".into(), at.into());
        }
        Value::Object(data)
    }
}

/// What a subscription selects: each field is one value, or `None` for any value (and for its
/// absence). Two subscriptions are the same when these are equal; the body is not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    pub class: Option<String>,
    pub subclass: Option<String>,
    pub kind: Option<String>,
    pub obj_id: Option<String>,
}

impl Selector {
    /// Each field on its own: a specific value matches only an equal value.
    pub fn matches(&self, event: &LiveEvent) -> bool {
        fn one(want: &Option<String>, got: Option<&str>) -> bool {
            match want {
                None => true,
                Some(want) => got == Some(want.as_str()),
            }
        }
        one(&self.class, Some(&event.class))
            && one(&self.subclass, event.subclass.as_deref())
            && one(&self.kind, event.kind.as_deref())
            && one(&self.obj_id, event.obj_id.as_deref())
    }

    /// The subscription as `get_subscriptions` lists it.
    pub fn to_json(&self, body: &Value) -> Value {
        let field = |v: &Option<String>| Value::from(v.clone().unwrap_or_else(|| ANY.into()));
        let mut out = Map::new();
        out.insert("class".into(), field(&self.class));
        out.insert("subclass".into(), field(&self.subclass));
        out.insert("type".into(), field(&self.kind));
        out.insert("obj_id".into(), field(&self.obj_id));
        if body.as_object().is_some_and(|b| !b.is_empty()) {
            out.insert("body".into(), body.clone());
        }
        Value::Object(out)
    }
}

/// A field of a request: absent, null or `"*"` is `None`; a string is itself; anything else, or a
/// string that is empty or too long, is refused.
pub fn field(data: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == ANY => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_FIELD_CHARS => {
            Ok(Some(s.clone()))
        }
        Some(Value::String(_)) => Err(DomainError::Invalid(format!(
            "{name} is 1 to {MAX_FIELD_CHARS} characters"
        ))),
        Some(_) => Err(DomainError::Invalid(format!("{name} is a string"))),
    }
}

/// A mandatory string field.
pub fn required(data: &Map<String, Value>, name: &str) -> Result<String> {
    match data.get(name) {
        None | Some(Value::Null) => Err(DomainError::Missing(name.to_string())),
        Some(Value::String(s)) if s.is_empty() => Err(DomainError::Missing(name.to_string())),
        _ => field(data, name).map(|v| v.unwrap_or_else(|| ANY.to_string())),
    }
}

/// `service`: absent, or ours.
pub fn check_service(data: &Map<String, Value>) -> Result<()> {
    match data.get("service") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == SERVICE => Ok(()),
        Some(_) => Err(DomainError::Invalid(format!(
            "service is {SERVICE:?}, the only service here"
        ))),
    }
}

/// The body of a subscription or an event: absent is `{}`; any JSON value is kept.
pub fn body(data: &Map<String, Value>) -> Value {
    body_of(data, "body")
}

/// A free-form field (`body`, a relayed command's `data`): absent or null is `{}`.
pub fn body_of(data: &Map<String, Value>, name: &str) -> Value {
    match data.get(name) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => v.clone(),
    }
}

/// Reads a subscription (subscribe, unsubscribe): `class` is mandatory (`"*"` allowed).
pub fn selector(data: &Map<String, Value>) -> Result<Selector> {
    check_service(data)?;
    let class = required(data, "class")?;
    Ok(Selector {
        class: (class != ANY).then_some(class),
        subclass: field(data, "subclass")?,
        kind: field(data, "type")?,
        obj_id: field(data, "obj_id")?,
    })
}

/// The area whose Read right events of `class`/`subclass` need; `None` when they need none (events
/// clients send); `Err` lists the areas for a wildcard that covers several.
fn areas(class: Option<&str>, subclass: Option<&str>) -> Vec<FuncArea> {
    use FuncArea::*;
    match (class, subclass) {
        (Some("mdm"), Some("device" | "group" | "settings")) => vec![Devices],
        (Some("mdm"), Some("event")) => vec![Events],
        (Some("mdm"), Some("policy" | "subscriptions")) => vec![Policy],
        (Some("mdm"), Some("audit")) => vec![Admins],
        (Some("mdm"), Some(_)) => vec![],
        (Some("mdm"), None) => vec![Devices, Events, Policy, Admins],
        (Some("intake"), _) => vec![Events],
        _ => vec![],
    }
}

impl Caller {
    /// Whether this caller may receive `event`.
    pub fn may_see(&self, event: &LiveEvent) -> bool {
        event
            .area
            .is_none_or(|area| self.role.allows(area, Access::Read))
    }

    /// Whether this caller may act on the sessions of `user` (list them, stop them, send them
    /// commands): its own always, anybody's as an administrator.
    pub fn may_act_on(&self, user: &str) -> Result<()> {
        if self.name == user || self.role == Role::Administrator {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                "only an administrator acts on other users' sessions".into(),
            ))
        }
    }
}

impl Domain {
    /// Checks that `caller` may subscribe to `selector`: a class of the product's events needs the
    /// Read right of its area (for a wildcard subclass, of one of its areas: events of the others
    /// are not delivered). A wildcard class is allowed; what it delivers is filtered the same way.
    pub fn authorize_subscription(&self, caller: &Caller, selector: &Selector) -> Result<()> {
        let areas = areas(selector.class.as_deref(), selector.subclass.as_deref());
        if areas.is_empty()
            || areas
                .iter()
                .any(|area| caller.role.allows(*area, Access::Read))
        {
            return Ok(());
        }
        caller.require(areas[0], Access::Read)
    }

    /// Checks an event a client sends: a specific class, not one of the server's own.
    pub fn check_sent_event(&self, event: &LiveEvent) -> Result<()> {
        if event.class == ANY {
            return Err(DomainError::Invalid("class is a specific value".into()));
        }
        if RESERVED_CLASSES.contains(&event.class.as_str()) {
            return Err(DomainError::Forbidden(format!(
                "events of class {:?} come from the server only",
                event.class
            )));
        }
        Ok(())
    }

    /// Logs `user` in to the live API with a password, or with a REST API token that must be
    /// that account's.
    pub async fn live_login(
        &self,
        user: &str,
        credential: Credential<'_>,
        address: Option<std::net::IpAddr>,
    ) -> Result<Caller> {
        let caller = match credential {
            Credential::Password(password) => self.authenticate(user, password, address).await?,
            Credential::Token(token) => self.verify_token(token, address).await?,
        };
        if caller.name != user {
            return Err(DomainError::Unauthenticated(
                "the token belongs to another account".into(),
            ));
        }
        Ok(caller)
    }

    /// Puts an event a client sends on the bus, so that subscribers on every node get it, in
    /// order with everything else, and can resume past it.
    pub async fn publish_live(&self, caller: &Caller, event: &LiveEvent) -> Result<()> {
        self.check_sent_event(event)?;
        let payload = serde_json::json!({
            "class": event.class,
            "subclass": event.subclass,
            "type": event.kind,
            "obj_id": event.obj_id,
            "body": event.body,
            "user": caller.name,
        });
        self.store
            .publish("live.event", event.obj_id.as_deref(), Some(payload))
            .await?;
        Ok(())
    }
}

/// The live event a bus entry is, if it is one.
pub fn from_bus(bus: &BusEvent) -> Option<LiveEvent> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let mdm = |subclass: &str, kind: &str, area: FuncArea| LiveEvent {
        class: "mdm".into(),
        subclass: Some(subclass.into()),
        kind: Some(kind.into()),
        obj_id: bus.object_id.clone(),
        body: bus.payload.clone(),
        seq: Some(bus.seq),
        at: Some(bus.at),
        area: Some(area),
    };
    let topic = bus.topic.as_str();
    match topic {
        "device.event" => {
            let event = bus.event.as_ref()?;
            Some(LiveEvent {
                class: "mdm".into(),
                subclass: Some("event".into()),
                kind: event.event_type.clone(),
                obj_id: Some(event.device_id.clone()),
                body: serde_json::to_value(event).ok(),
                seq: Some(bus.seq),
                at: Some(bus.at),
                area: Some(FuncArea::Events),
            })
        }
        "intake.event" => {
            let record = bus.intake.as_ref()?;
            let e = &record.event;
            Some(LiveEvent {
                class: "intake".into(),
                subclass: e
                    .event_type
                    .and_then(super::intake::event_type_name)
                    .map(str::to_string),
                kind: e
                    .event_code
                    .map(|c| c.to_string())
                    .or_else(|| e.event_name.clone()),
                obj_id: e.entity_id.clone(),
                body: serde_json::to_value(e).ok(),
                seq: Some(bus.seq),
                at: Some(bus.at),
                area: Some(FuncArea::Events),
            })
        }
        "live.event" => {
            let p = bus.payload.as_ref()?;
            Some(LiveEvent {
                class: text(p.get("class"))?,
                subclass: text(p.get("subclass")),
                kind: text(p.get("type")),
                obj_id: text(p.get("obj_id")),
                body: p.get("body").filter(|b| !b.is_null()).cloned(),
                seq: Some(bus.seq),
                at: Some(bus.at),
                area: None,
            })
        }
        "policy.changed" => Some(mdm("policy", "changed", FuncArea::Policy)),
        "subscriptions.changed" => Some(mdm("subscriptions", "changed", FuncArea::Policy)),
        "group.changed" => Some(mdm("group", "changed", FuncArea::Devices)),
        "settings.changed" => Some(mdm("settings", "changed", FuncArea::Devices)),
        "audit" => {
            let action = text(bus.payload.as_ref()?.get("action"))?;
            Some(mdm("audit", &action, FuncArea::Admins))
        }
        _ => {
            let kind = topic.strip_prefix("device.")?;
            Some(mdm("device", kind, FuncArea::Devices))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event(
        class: &str,
        subclass: Option<&str>,
        kind: Option<&str>,
        obj: Option<&str>,
    ) -> LiveEvent {
        LiveEvent {
            class: class.into(),
            subclass: subclass.map(Into::into),
            kind: kind.map(Into::into),
            obj_id: obj.map(Into::into),
            body: None,
            seq: None,
            at: None,
            area: None,
        }
    }

    fn sel(data: Value) -> Selector {
        selector(data.as_object().unwrap()).unwrap()
    }

    #[test]
    fn omitted_or_any_fields_match_every_value_and_absence() {
        let s = sel(json!({"class": "media", "subclass": "*"}));
        assert!(s.matches(&event("media", None, None, None)));
        assert!(s.matches(&event("media", Some("session"), Some("t"), Some("o"))));
        assert!(!s.matches(&event("other", None, None, None)));
        let all = sel(json!({"class": "*"}));
        assert!(all.matches(&event("anything", Some("x"), None, None)));
    }

    #[test]
    fn a_specific_value_matches_only_an_equal_value() {
        let s = sel(json!({"class": "media", "type": "started"}));
        assert!(s.matches(&event("media", Some("a"), Some("started"), None)));
        assert!(!s.matches(&event("media", Some("a"), Some("stopped"), None)));
        assert!(!s.matches(&event("media", Some("a"), None, None)));
        // The original's quirk (a wildcard subclass with a specific type never matching) is not
        // copied: each field stands alone.
        let quirk = sel(json!({"class": "media", "subclass": "*", "type": "t"}));
        assert!(quirk.matches(&event("media", Some("s"), Some("t"), None)));
    }

    #[test]
    fn bodies_merge_under_the_events_own() {
        let mut e = event("c", None, Some("*"), None);
        e.kind = None;
        e.body = Some(json!({"b": 2, "a": 9}));
        let sub = json!({"a": 1, "c": 3});
        assert_eq!(
            e.data(&[&sub]),
            json!({"class": "c", "body": {"a": 9, "b": 2, "c": 3}})
        );
        e.body = None;
        assert_eq!(e.data(&[&json!({})]), json!({"class": "c"}));
        assert_eq!(e.data(&[&sub])["body"], sub);
        e.body = Some(json!("text"));
        assert_eq!(e.data(&[&sub])["body"], "text");
    }

    #[test]
    fn requests_fields_are_checked() {
        let data = json!({"class": "", "subclass": 5});
        assert!(matches!(
            selector(data.as_object().unwrap()),
            Err(DomainError::Missing(_))
        ));
        let data = json!({"class": "a", "subclass": 5});
        assert!(matches!(
            selector(data.as_object().unwrap()),
            Err(DomainError::Invalid(_))
        ));
        let data = json!({"class": "a", "service": "other"});
        assert!(selector(data.as_object().unwrap()).is_err());
        let data = json!({"class": "a", "service": SERVICE});
        assert!(selector(data.as_object().unwrap()).is_ok());
    }

    fn value() -> impl Strategy<Value = Option<String>> {
        prop_oneof![Just(None), "[ab]".prop_map(Some)]
    }

    proptest! {
        /// Matching is each field on its own: a selector matches exactly when every field it
        /// names equals the event's.
        #[test]
        fn matching_is_field_by_field(
            want in (value(), value(), value(), value()),
            got in ("[ab]", value(), value(), value()),
        ) {
            let s = Selector { class: want.0.clone(), subclass: want.1.clone(), kind: want.2.clone(), obj_id: want.3.clone() };
            let e = LiveEvent { class: got.0.clone(), subclass: got.1.clone(), kind: got.2.clone(), obj_id: got.3.clone(), body: None, seq: None, at: None, area: None };
            let each = |w: &Option<String>, g: Option<&String>| w.as_ref().is_none_or(|w| Some(w) == g);
            let expected = each(&want.0, Some(&got.0)) && each(&want.1, got.1.as_ref())
                && each(&want.2, got.2.as_ref()) && each(&want.3, got.3.as_ref());
            prop_assert_eq!(s.matches(&e), expected);
        }
    }
}
