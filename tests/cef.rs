//! CEF lines of device and intake events, hostile text included, read back by a standard CEF
//! parser (pycef, from PyPI; `scripts/test` installs it) with every field intact.

mod common;

use mobile_admin::export::cef;
use mobile_admin::store::{EventRecord, IntakeEvent};
use rand::{Rng, SeedableRng};

/// Text with what CEF must escape, spaces, and characters outside ASCII.
fn tricky(rng: &mut rand::rngs::StdRng) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "7",
        " ",
        "=",
        "\\",
        "|",
        "\n",
        "\r\n",
        "é",
        "ф",
        "🦀",
        "key=value",
        "\\=",
        "'",
        "\"",
        ",",
        "cs1=",
        "end\\",
    ];
    let n = rng.random_range(1..12);
    let text: String = (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect();
    // CEF values cannot keep spaces at their edges (readers split on them); senders' leading and
    // trailing spaces are not promised to survive.
    let text = text.trim().to_string();
    if text.is_empty() {
        "x".into()
    } else {
        text
    }
}

fn device_event(rng: &mut rand::rngs::StdRng, n: i64) -> EventRecord {
    EventRecord {
        id: n,
        device_id: format!("IMEI-{n}"),
        event_id: tricky(rng),
        severity: Some(rng.random_range(1..5)),
        product_name: Some("KAVMOBILE".into()),
        product_version: Some("6.0".into()),
        event_type: Some(tricky(rng)),
        event_type_display_name: Some(tricky(rng)),
        descr: Some(tricky(rng)),
        locid: None,
        rise_time: Some(time::macros::datetime!(2026-12-05 09:04:05 UTC)),
        rise_time_ms: None,
        par: Default::default(),
        virus_name: Some(tricky(rng)),
        object_name: Some(tricky(rng)),
        truncated: false,
        received_at: time::macros::datetime!(2026-12-05 09:04:06 UTC),
        source_address: "10.1.2.3".into(),
    }
}

#[test]
fn a_standard_parser_reads_every_device_event_back() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261205);
    let source = cef::Source::new("mdm-1");
    let events: Vec<EventRecord> = (0..300).map(|n| device_event(&mut rng, n)).collect();
    let lines: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(seq, e)| cef::device_event(&source, seq as i64, e))
        .collect();
    assert!(
        lines.iter().all(|l| !l.contains('\n')),
        "one line per event"
    );
    let parsed = common::cef_parse(&lines);
    assert_eq!(parsed.len(), events.len());
    for (n, (e, p)) in events.iter().zip(&parsed).enumerate() {
        let line = &lines[n];
        assert_eq!(p["CEFVersion"], "0", "{line}");
        assert_eq!(p["DeviceVendor"], "mobile-admin", "{line}");
        assert_eq!(
            p["DeviceSeverity"],
            cef::device_severity(e.severity),
            "{line}"
        );
        for (key, want) in [
            ("deviceExternalId", e.device_id.as_str()),
            ("externalId", e.event_id.as_str()),
            ("msg", e.descr.as_deref().unwrap()),
            ("virusName", e.virus_name.as_deref().unwrap()),
            ("objectName", e.object_name.as_deref().unwrap()),
            ("eventType", e.event_type.as_deref().unwrap()),
            (
                "eventTypeName",
                e.event_type_display_name.as_deref().unwrap(),
            ),
            ("src", "10.1.2.3"),
        ] {
            assert_eq!(p[key], want, "{key} of {line}");
        }
        assert_eq!(p["busSeq"], n.to_string(), "{line}");
    }
}

#[test]
fn a_standard_parser_reads_intake_events_back_with_the_seeds_keys() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let source = cef::Source::new("mdm-1");
    let received = time::macros::datetime!(2026-12-05 09:04:06 UTC);
    let events: Vec<IntakeEvent> = (0..100)
        .map(|n| IntakeEvent {
            uid: format!("955f8b51-00a4-4807-b723-{n:012}"),
            event_code: Some(2001),
            entity_id: Some(tricky(&mut rng)),
            entity_data: Some(tricky(&mut rng)),
            ip: Some("::ffff:192.168.1.159".into()),
            user_id: Some(tricky(&mut rng)),
            worker_admin_name: Some(tricky(&mut rng)),
            text: Some(tricky(&mut rng)),
            event_type: Some(rng.random_range(1..5)),
            ..IntakeEvent::default()
        })
        .collect();
    let lines: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(seq, e)| cef::intake_event(&source, seq as i64, e, received))
        .collect();
    let parsed = common::cef_parse(&lines);
    for (n, (e, p)) in events.iter().zip(&parsed).enumerate() {
        let line = &lines[n];
        assert_eq!(p["DeviceEventClassID"], "2001", "{line}");
        assert_eq!(
            p["DeviceSeverity"],
            cef::intake_severity(e.event_type),
            "{line}"
        );
        for (key, want) in [
            ("entityid", e.entity_id.as_deref().unwrap()),
            ("entitydata", e.entity_data.as_deref().unwrap()),
            ("ip", "::ffff:192.168.1.159"),
            ("userid", e.user_id.as_deref().unwrap()),
            ("workeradminname", e.worker_admin_name.as_deref().unwrap()),
            ("msg", e.text.as_deref().unwrap()),
            ("id", e.uid.as_str()),
        ] {
            assert_eq!(p[key], want, "{key} of {line}");
        }
    }
}
