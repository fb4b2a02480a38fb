//! Device events as they are stored: field limits applied, odd fields flagged, named parameters split out.
//!
//! SPEC section 5 (PutEvents) and seed section 9. Nothing here refuses an event: an over-long field
//! is cut and flagged, an unparseable one was already dropped by the codec and is listed in
//! `odd_fields`, so one odd event can never block a device.

use serde::Serialize;
use time::OffsetDateTime;

use crate::soap::EventInfo;

/// Field limits in characters (seed sections 2.5, 2.6 and 5).
pub const MAX_EVENT_ID: usize = 256;
pub const MAX_PRODUCT: usize = 31;
pub const MAX_EVENT_TYPE: usize = 50;
pub const MAX_EVENT_TYPE_DISPLAY_NAME: usize = 100;
pub const MAX_DESCR: usize = 1000;
pub const MAX_PAR: usize = 512;

pub const VIRUS_FOUND: &str = "GNRL_EV_VIRUS_FOUND";

/// Parameters that seed section 9 gives a fixed meaning for GNRL_EV_* event types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Named {
    pub object_name: Option<String>,
    pub virus_name: Option<String>,
    pub uid: Option<String>,
    pub user_name: Option<String>,
    pub detection_type: Option<String>,
    pub attack_name: Option<String>,
    pub protocol: Option<String>,
    pub ip_address: Option<String>,
    pub port: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub event_id: String,
    pub severity: Option<i32>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub event_type: Option<String>,
    pub event_type_display_name: Option<String>,
    pub descr: Option<String>,
    pub locid: Option<i32>,
    pub rise_time: Option<OffsetDateTime>,
    pub rise_time_ms: Option<i32>,
    pub par: [Option<String>; 9],
    pub named: Named,
    pub truncated: bool,
    pub odd_fields: Vec<String>,
}

/// Cuts `s` to `max` characters; sets `*cut` if it did.
fn limit(s: String, max: usize, cut: &mut bool) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => {
            *cut = true;
            let mut s = s;
            s.truncate(at);
            s
        }
        None => s,
    }
}

/// par3 of GNRL_EV_ATTACK_DETECTED is an IPv4 address written as an unsigned integer ("2886729929").
fn ipv4_from_decimal(text: &str) -> Option<String> {
    let n: u32 = text.trim().parse().ok()?;
    Some(std::net::Ipv4Addr::from(n).to_string())
}

fn named(event_type: Option<&str>, par: &[Option<String>; 9]) -> Named {
    let p = |i: usize| par[i - 1].clone().filter(|s| !s.is_empty());
    let mut n = Named::default();
    match event_type {
        Some(
            "GNRL_EV_OBJECT_CURED"
            | "GNRL_EV_OBJECT_DELETED"
            | "GNRL_EV_PASSWD_ARCHIVE_FOUND"
            | "GNRL_EV_OBJECT_QUARANTINED"
            | "GNRL_EV_OBJECT_NOTCURED",
        ) => {
            n.object_name = p(2);
            n.uid = p(6);
        }
        Some("GNRL_EV_SUSPICIOUS_OBJECT_FOUND") => {
            n.object_name = p(2);
            n.virus_name = p(5);
            n.uid = p(6);
        }
        Some(VIRUS_FOUND) => {
            n.object_name = p(2);
            n.virus_name = p(5);
            n.uid = p(6);
            n.user_name = p(7);
            n.detection_type = p(8);
        }
        Some("GNRL_EV_ATTACK_DETECTED") => {
            n.attack_name = p(1);
            n.protocol = p(2);
            n.ip_address = p(3).map(|raw| ipv4_from_decimal(&raw).unwrap_or(raw));
            n.port = p(4);
        }
        _ => {}
    }
    n
}

fn escape_body(b: &mut crate::soap::EventBody) {
    use crate::text::escape_opt;
    for field in [
        &mut b.product_name,
        &mut b.product_version,
        &mut b.event_type,
        &mut b.event_type_display_name,
        &mut b.descr,
    ] {
        escape_opt(field);
    }
    for p in &mut b.par {
        escape_opt(p);
    }
}

/// The id of an event that came without one: derived from its content, so that a resend of the
/// same event is still recognised as a duplicate.
fn derived_id(body: &crate::soap::EventBody) -> String {
    format!("derived:{}", hex::encode(crate::sync::policy::digest(body)))
}

/// An event id longer than [`MAX_EVENT_ID`] characters, stored in that many: its beginning, then
/// `~sha256:` and the hash of the whole id. Two ids that differ anywhere stay two events; cutting
/// them to their first characters would acknowledge the second and store only the first.
fn long_id(id: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(id.as_bytes()));
    let keep = MAX_EVENT_ID - "~sha256:".len() - hash.len();
    let head: String = id.chars().take(keep).collect();
    format!("{head}~sha256:{hash}")
}

/// The stored form of one received event.
pub fn normalize(mut event: EventInfo) -> StoredEvent {
    let mut cut = false;
    // No control characters reach storage (see `crate::text`); the escaping happens before the
    // limits, so an escaped field is cut like any other.
    crate::text::escape_in_place(&mut event.event_id);
    escape_body(&mut event.body);
    let event_id = if event.event_id.is_empty() {
        derived_id(&event.body)
    } else if event.event_id.chars().nth(MAX_EVENT_ID).is_some() {
        cut = true;
        long_id(&event.event_id)
    } else {
        event.event_id
    };
    let b = event.body;
    let lim = |s: Option<String>, max: usize, cut: &mut bool| s.map(|s| limit(s, max, cut));
    let par = b.par.map(|p| lim(p, MAX_PAR, &mut cut));
    let event_type = lim(b.event_type, MAX_EVENT_TYPE, &mut cut);
    StoredEvent {
        event_id,
        severity: b.severity,
        product_name: lim(b.product_name, MAX_PRODUCT, &mut cut),
        product_version: lim(b.product_version, MAX_PRODUCT, &mut cut),
        event_type_display_name: lim(
            b.event_type_display_name,
            MAX_EVENT_TYPE_DISPLAY_NAME,
            &mut cut,
        ),
        descr: lim(b.descr, MAX_DESCR, &mut cut),
        locid: b.locid,
        rise_time: b.rise_time,
        rise_time_ms: b.rise_time_ms,
        named: named(event_type.as_deref(), &par),
        event_type,
        par,
        truncated: cut,
        odd_fields: b.odd_fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::EventBody;

    fn event(event_type: &str, par: &[(usize, &str)]) -> EventInfo {
        let mut body = EventBody {
            event_type: Some(event_type.into()),
            severity: Some(4),
            ..EventBody::default()
        };
        for (i, v) in par {
            body.par[i - 1] = Some(v.to_string());
        }
        EventInfo {
            event_id: "e1".into(),
            body,
        }
    }

    #[test]
    fn virus_found_parameters_are_named() {
        let e = normalize(event(
            VIRUS_FOUND,
            &[
                (2, "\\Storage Card\\x.exe"),
                (5, "EICAR-Test-File"),
                (6, "42"),
                (7, "user"),
                (8, "61"),
            ],
        ));
        assert_eq!(
            e.named.object_name.as_deref(),
            Some("\\Storage Card\\x.exe")
        );
        assert_eq!(e.named.virus_name.as_deref(), Some("EICAR-Test-File"));
        assert_eq!(e.named.uid.as_deref(), Some("42"));
        assert_eq!(e.named.user_name.as_deref(), Some("user"));
        assert_eq!(e.named.detection_type.as_deref(), Some("61"));
        assert!(!e.truncated);
    }

    #[test]
    fn attack_address_is_decoded_and_other_types_untouched() {
        let e = normalize(event(
            "GNRL_EV_ATTACK_DETECTED",
            &[
                (1, "Ping of death"),
                (2, "ICMP"),
                (3, "2886729929"),
                (4, "0"),
            ],
        ));
        assert_eq!(e.named.ip_address.as_deref(), Some("172.16.0.201"));
        assert_eq!(e.named.attack_name.as_deref(), Some("Ping of death"));
        let e = normalize(event("GNRL_EV_ATTACK_DETECTED", &[(3, "not a number")]));
        assert_eq!(e.named.ip_address.as_deref(), Some("not a number"));
        let e = normalize(event("APP_OWN_EVENT", &[(2, "x")]));
        assert_eq!(e.named, Named::default());
    }

    #[test]
    fn events_without_an_id_get_one_from_their_content() {
        let mut a = event("T", &[(1, "x")]);
        a.event_id = String::new();
        let mut b = a.clone();
        let first = normalize(a.clone());
        assert!(first.event_id.starts_with("derived:"));
        assert_eq!(
            normalize(a).event_id,
            first.event_id,
            "a resend is a duplicate"
        );
        b.body.par[0] = Some("y".into());
        assert_ne!(normalize(b).event_id, first.event_id);
    }

    #[test]
    fn long_fields_are_cut_on_character_boundaries_and_flagged() {
        let mut ev = event("T", &[(1, &"я".repeat(600))]);
        ev.body.descr = Some("d".repeat(1000));
        let e = normalize(ev);
        assert!(e.truncated);
        assert_eq!(e.par[0].as_ref().unwrap().chars().count(), MAX_PAR);
        assert_eq!(
            e.descr.as_ref().unwrap().len(),
            1000,
            "exactly at the limit is kept"
        );
        let mut ev = event(&"T".repeat(51), &[]);
        ev.event_id = "i".repeat(300);
        let e = normalize(ev);
        assert!(e.truncated);
        assert_eq!(e.event_type.unwrap().len(), MAX_EVENT_TYPE);
        assert_eq!(e.event_id.chars().count(), MAX_EVENT_ID);
    }

    #[test]
    fn long_ids_that_share_a_beginning_stay_distinct() {
        let stem = "x".repeat(MAX_EVENT_ID);
        let mut a = event("T", &[]);
        a.event_id = format!("{stem}A");
        let mut b = a.clone();
        b.event_id = format!("{stem}B");
        let (a, b) = (normalize(a), normalize(b));
        assert_ne!(a.event_id, b.event_id);
        assert_eq!(a.event_id.chars().count(), MAX_EVENT_ID);
        assert!(a.event_id.starts_with("xxx") && a.truncated);
        let mut exact = event("T", &[]);
        exact.event_id = stem.clone();
        assert_eq!(
            normalize(exact).event_id,
            stem,
            "at the limit it is kept as is"
        );
        let mut wide = event("T", &[]);
        wide.event_id = "я".repeat(400);
        assert_eq!(normalize(wide).event_id.chars().count(), MAX_EVENT_ID);
    }

    #[test]
    fn control_characters_are_escaped_before_storage() {
        let mut ev = event("T", &[(1, "a\u{7}b")]);
        ev.event_id = "id\n\u{1b}[2J".into();
        ev.body.descr = Some("line one\nline two".into());
        let e = normalize(ev);
        assert_eq!(e.event_id, "id\n\\u{1b}[2J");
        assert_eq!(e.par[0].as_deref(), Some("a\\u{7}b"));
        assert_eq!(
            e.descr.as_deref(),
            Some("line one\nline two"),
            "newlines are kept"
        );
    }
}
