//! CEF (ArcSight Common Event Format) lines for device events and intake events, pure.
//!
//! `<Mmm dd HH:mm:ss> <host> CEF:0|vendor|product|version|signature|name|severity|extension`, in
//! UTC. The header's variable fields (signature and name come from devices and senders) keep only
//! characters every CEF reader takes: `|`, `\`, `=` and line breaks become `_`, and the exact values
//! travel in the extension too. Extension values are escaped as CEF requires (`\\`, `\=`, `\n`,
//! `\r`); absent values are left out rather than written empty.

use time::OffsetDateTime;

use crate::store::{EventRecord, IntakeEvent};

/// What stands in the header before the event's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub vendor: String,
    pub product: String,
    pub version: String,
    /// The host named before `CEF:0`.
    pub host: String,
}

impl Source {
    pub fn new(host: &str) -> Source {
        Source {
            vendor: "mobile-admin".into(),
            product: "mobile-admin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            host: header(host).replace(' ', "_"),
        }
    }
}

/// A header field: no `|`, `\`, `=` or line breaks (see the module's note); never empty.
fn header(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| match c {
            '|' | '\\' | '=' => '_',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let clean = clean.trim().to_string();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

/// Appends an extension value, escaped.
fn escape_into(out: &mut String, text: &str) {
    out.reserve(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The extension: `key=value` pairs in order, absent and empty values left out, written straight
/// into one string.
struct Extension(String);

impl Extension {
    fn new() -> Extension {
        Extension(String::with_capacity(512))
    }

    fn add(&mut self, key: &str, text: Option<impl AsRef<str>>) -> &mut Self {
        if let Some(text) = text {
            let text = text.as_ref();
            if !text.is_empty() {
                if !self.0.is_empty() {
                    self.0.push(' ');
                }
                self.0.push_str(key);
                self.0.push('=');
                escape_into(&mut self.0, text);
            }
        }
        self
    }

    /// A custom string field `csN` with its label.
    fn custom(&mut self, n: u8, label: &str, text: Option<impl AsRef<str>>) -> &mut Self {
        if text.as_ref().is_some_and(|t| !t.as_ref().is_empty()) {
            self.add(&format!("cs{n}"), text);
            self.add(&format!("cs{n}Label"), Some(label));
        }
        self
    }

    fn render(&self) -> &str {
        &self.0
    }
}

/// Milliseconds since the epoch, CEF's `rt` form.
fn millis(t: OffsetDateTime) -> String {
    (t.unix_timestamp_nanos() / 1_000_000).to_string()
}

/// RFC 3164's `Mmm dd HH:mm:ss`, in UTC.
fn syslog_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second]"
    ))
    .unwrap_or_default()
}

fn line(
    source: &Source,
    at: OffsetDateTime,
    signature: &str,
    name: &str,
    severity: &str,
    extension: &Extension,
) -> String {
    format!(
        "{} {} CEF:0|{}|{}|{}|{}|{}|{}|{}",
        syslog_time(at),
        source.host,
        header(&source.vendor),
        header(&source.product),
        header(&source.version),
        header(signature),
        header(name),
        severity,
        extension.render()
    )
}

/// A device event's severity (1 info .. 4 critical) on CEF's 0–10 scale.
pub fn device_severity(severity: Option<i32>) -> &'static str {
    match severity {
        Some(1) => "3",
        Some(2) => "5",
        Some(3) => "7",
        Some(4) => "10",
        _ => "Unknown",
    }
}

/// An intake event's `EventType` (1 Info, 2 Error, 3 SecurityIncident, 4 Correction) as severity.
pub fn intake_severity(event_type: Option<i64>) -> &'static str {
    match event_type {
        Some(1) => "3",
        Some(4) => "5",
        Some(2) => "7",
        Some(3) => "10",
        _ => "Unknown",
    }
}

/// The CEF line of a device event; `seq` is its place on the bus (`cn1`), so that a reader can
/// tell where a file stops.
pub fn device_event(source: &Source, seq: i64, e: &EventRecord) -> String {
    let at = e.rise_time.unwrap_or(e.received_at);
    let event_type = e.event_type.as_deref().unwrap_or("device event");
    let name = e.event_type_display_name.as_deref().unwrap_or(event_type);
    let params: Vec<String> = e
        .par
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().map(|p| format!("PAR{}={p}", i + 1)))
        .collect();
    let product = match (&e.product_name, &e.product_version) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (Some(n), None) => Some(n.clone()),
        _ => None,
    };
    let mut ext = Extension::new();
    ext.add("rt", Some(millis(at)))
        .add("deviceExternalId", Some(&e.device_id))
        .add("dvchost", Some(&e.device_id))
        .add("src", Some(&e.source_address))
        .add("externalId", Some(&e.event_id))
        .add("msg", e.descr.as_ref())
        .custom(1, "virusName", e.virus_name.as_ref())
        .custom(2, "objectName", e.object_name.as_ref())
        .custom(3, "product", product)
        .custom(4, "eventType", e.event_type.as_ref())
        .custom(5, "eventTypeName", e.event_type_display_name.as_ref())
        .custom(
            6,
            "parameters",
            (!params.is_empty()).then(|| params.join("; ")),
        )
        .add("cn1", Some(seq.to_string()))
        .add("cn1Label", Some("busSeq"));
    line(
        source,
        at,
        event_type,
        name,
        device_severity(e.severity),
        &ext,
    )
}

/// The CEF line of an intake event: seed 002's keys (`entityid`, `entitydata`, `ip`,
/// `operationkey`, `userid`, `workeradminname`, `id`), and what the seed's converter left out
/// (`msg`, `rt`, `tenantid`, `eventtype`, `signature`, `sendedat`). Signature = `Event`.
pub fn intake_event(
    source: &Source,
    seq: i64,
    e: &IntakeEvent,
    received: OffsetDateTime,
) -> String {
    let at = e.orch_timestamp_utc.unwrap_or(received);
    let signature = e
        .event_code
        .map(|c| c.to_string())
        .or_else(|| e.event_name.clone())
        .unwrap_or_else(|| "intake event".into());
    let name = e.event_name.clone().unwrap_or_else(|| signature.clone());
    let mut ext = Extension::new();
    ext.add("rt", Some(millis(at)))
        .add("entityid", e.entity_id.as_ref())
        .add("entitydata", e.entity_data.as_ref())
        .add("ip", e.ip.as_ref())
        .add("operationkey", e.operation_key.as_ref())
        .add("userid", e.user_id.as_ref())
        .add("workeradminname", e.worker_admin_name.as_ref())
        .add("id", Some(&e.uid))
        .add("msg", e.text.as_ref())
        .add("tenantid", e.tenant_id.as_ref())
        .add("eventtype", e.event_type.map(|t| t.to_string()))
        .add("signature", e.signature.as_ref())
        .add("sendedat", e.sended_at.map(crate::store::timestamp))
        .add("cn1", Some(seq.to_string()))
        .add("cn1Label", Some("busSeq"));
    let mut intake = source.clone();
    intake.product = format!("{} intake", source.product);
    line(
        &intake,
        at,
        &signature,
        &name,
        intake_severity(e.event_type),
        &ext,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> EventRecord {
        EventRecord {
            id: 7,
            device_id: "IMEI 1|x".into(),
            event_id: "evt=1".into(),
            severity: Some(4),
            product_name: Some("KAVMOBILE".into()),
            product_version: Some("6.0".into()),
            event_type: Some("GNRL_EV_VIRUS_FOUND".into()),
            event_type_display_name: Some("Virus | found \\ here".into()),
            descr: Some("line one\nline two = \\path".into()),
            locid: None,
            rise_time: Some(time::macros::datetime!(2026-12-05 09:04:05 UTC)),
            rise_time_ms: None,
            par: Default::default(),
            virus_name: Some("EICAR".into()),
            object_name: None,
            truncated: false,
            received_at: time::macros::datetime!(2026-12-05 09:04:06 UTC),
            source_address: "10.0.0.1".into(),
        }
    }

    #[test]
    fn a_device_event_is_one_line_with_an_escaped_extension() {
        let line = device_event(&Source::new("mdm host"), 42, &record());
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with("Dec  5 09:04:05 mdm_host CEF:0|mobile-admin|mobile-admin|"),
            "{line}"
        );
        assert!(
            line.contains("|GNRL_EV_VIRUS_FOUND|Virus _ found _ here|10|rt=1796461445000 "),
            "{line}"
        );
        assert!(
            line.contains("msg=line one\\nline two \\= \\\\path "),
            "{line}"
        );
        assert!(line.contains("deviceExternalId=IMEI 1|x "), "{line}");
        assert!(line.contains("externalId=evt\\=1 "), "{line}");
        assert!(line.contains("cs1=EICAR cs1Label=virusName"), "{line}");
        assert!(!line.contains("cs2="), "absent values are left out: {line}");
        assert!(line.ends_with("cn1=42 cn1Label=busSeq"), "{line}");
    }

    #[test]
    fn severities_map_to_cef() {
        assert_eq!(
            [1, 2, 3, 4].map(|s| device_severity(Some(s))),
            ["3", "5", "7", "10"]
        );
        assert_eq!(device_severity(None), "Unknown");
        assert_eq!(
            [1, 2, 3, 4].map(|t| intake_severity(Some(t))),
            ["3", "7", "10", "5"]
        );
    }

    #[test]
    fn an_intake_event_keeps_the_seeds_keys() {
        let e = IntakeEvent {
            uid: "955f8b51-00a4-4807-b723-a3e5c547da01".into(),
            event_code: Some(2001),
            entity_id: Some("agent, tenantId=".into()),
            ip: Some("::ffff:192.168.1.159".into()),
            event_type: Some(3),
            ..IntakeEvent::default()
        };
        let received = time::macros::datetime!(2026-12-05 09:04:06 UTC);
        let line = intake_event(&Source::new("h"), 3, &e, received);
        assert!(line.contains("|mobile-admin intake|"), "{line}");
        assert!(line.contains("|2001|2001|10|"), "{line}");
        assert!(line.contains("entityid=agent, tenantId\\= "), "{line}");
        assert!(
            line.contains("id=955f8b51-00a4-4807-b723-a3e5c547da01"),
            "{line}"
        );
    }
}
