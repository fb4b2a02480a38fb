//! The webhook sender of seed 002 (the Orchestrator's `LogEventsWebhook`): logs in at `login_url`
//! with `{"UserName", "Password"}` for a `{"Token"}`, then posts each event as a Table 1 object with
//! `Authorization: Bearer`, logging in again on a 401. Device events get a stable `Id` (a UUIDv5 of
//! the device id and the event id), so a resend is recognised by the receiver.

use std::path::Path;

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::store::{EventRecord, IntakeRecord};

/// The namespace of device events' `Id`s.
const DEVICE_EVENTS: uuid::Uuid = uuid::Uuid::from_u128(0x6d6f_6269_6c65_2d61_646d_696e_2d65_7674);

fn time_text(t: Option<OffsetDateTime>) -> Value {
    t.map(|t| Value::String(crate::store::timestamp(t)))
        .unwrap_or(Value::Null)
}

/// Table 1 for a device event.
pub fn device_event(e: &EventRecord, now: OffsetDateTime) -> Value {
    let id = uuid::Uuid::new_v5(
        &DEVICE_EVENTS,
        format!("{}\u{0}{}", e.device_id, e.event_id).as_bytes(),
    );
    // Severity 1 info, 2 warning: Info; 3 error: Error; 4 critical: SecurityIncident.
    let event_type = match e.severity {
        Some(1) | Some(2) => json!(1),
        Some(3) => json!(2),
        Some(4) => json!(3),
        _ => Value::Null,
    };
    let data = json!({
        "event_id": e.event_id,
        "severity": e.severity,
        "product_name": e.product_name,
        "product_version": e.product_version,
        "event_type_display_name": e.event_type_display_name,
        "virus_name": e.virus_name,
        "object_name": e.object_name,
        "parameters": e.par,
        "received_at": crate::store::timestamp(e.received_at),
    });
    json!({
        "Id": id.to_string(),
        "Event": e.event_type,
        "EntityId": e.device_id,
        "UserId": null,
        "OrchTimestampUtc": time_text(Some(e.rise_time.unwrap_or(e.received_at))),
        "OperationKey": null,
        "Signature": null,
        "WorkerAdminName": null,
        "Text": e.descr,
        "EventType": event_type,
        "IP": e.source_address,
        "TenantId": null,
        "EntityData": data.to_string(),
        "SendedAt": time_text(Some(now)),
    })
}

/// Table 1 for an intake event, passed on as it came.
pub fn intake_event(r: &IntakeRecord, now: OffsetDateTime) -> Value {
    let e = &r.event;
    json!({
        "Id": e.uid,
        "Event": e.event_code.map(Value::from).or_else(|| e.event_name.clone().map(Value::from)),
        "EntityId": e.entity_id,
        "UserId": e.user_id,
        "OrchTimestampUtc": time_text(e.orch_timestamp_utc),
        "OperationKey": e.operation_key,
        "Signature": e.signature,
        "WorkerAdminName": e.worker_admin_name,
        "Text": e.text,
        "EventType": e.event_type,
        "IP": e.ip,
        "TenantId": e.tenant_id,
        "EntityData": e.entity_data,
        "SendedAt": time_text(Some(now)),
    })
}

/// A webhook receiver, logged in on demand.
pub struct Webhook {
    client: reqwest::Client,
    login_url: Option<String>,
    url: String,
    user_name: String,
    password: String,
    token: Option<String>,
}

impl Webhook {
    /// `cafile` holds the certificate(s) an `https` receiver's must chain to.
    pub fn new(
        login_url: Option<&str>,
        url: &str,
        user_name: &str,
        password: &str,
        cafile: Option<&Path>,
    ) -> Result<Webhook, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("mobile-admin/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = cafile {
            builder = builder.tls_backend_preconfigured(
                crate::tls::client_config(ca).map_err(|e| e.to_string())?,
            );
        } else if url.starts_with("https:") || login_url.is_some_and(|u| u.starts_with("https:")) {
            return Err("an https webhook needs cafile".into());
        } else {
            // Plain http: the client still needs a TLS configuration to be built (one that trusts
            // nothing, since it never speaks TLS).
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            builder = builder.tls_backend_preconfigured(config);
        }
        Ok(Webhook {
            client: builder.build().map_err(|e| e.to_string())?,
            login_url: login_url.filter(|u| !u.is_empty()).map(str::to_string),
            url: url.to_string(),
            user_name: user_name.to_string(),
            password: password.to_string(),
            token: None,
        })
    }

    async fn login(&mut self) -> Result<(), String> {
        let Some(login_url) = &self.login_url else {
            return Ok(());
        };
        let response = self
            .client
            .post(login_url)
            .json(&json!({"UserName": self.user_name, "Password": self.password}))
            .send()
            .await
            .map_err(|e| format!("webhook login: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("webhook login: {}", response.status()));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("webhook login: {e}"))?;
        let token = body
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("token")))
            .and_then(|(_, v)| v.as_str())
            .ok_or("webhook login: no Token in the answer")?;
        self.token = Some(token.to_string());
        Ok(())
    }

    async fn post(&self, event: &Value) -> Result<reqwest::StatusCode, String> {
        let mut req = self.client.post(&self.url).json(event);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        Ok(req
            .send()
            .await
            .map_err(|e| format!("webhook: {e}"))?
            .status())
    }

    /// Posts each event in order; a 401 logs in again once. Stops at the first failure.
    pub async fn send(&mut self, events: &[Value]) -> Result<(), String> {
        if self.token.is_none() {
            self.login().await?;
        }
        for event in events {
            let mut status = self.post(event).await?;
            if status == reqwest::StatusCode::UNAUTHORIZED && self.login_url.is_some() {
                self.login().await?;
                status = self.post(event).await?;
            }
            if !status.is_success() {
                return Err(format!("webhook answered {status}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_events_get_a_stable_id_and_table_1_fields() {
        let e = EventRecord {
            id: 1,
            device_id: "IMEI-1".into(),
            event_id: "evt-1".into(),
            severity: Some(4),
            product_name: None,
            product_version: None,
            event_type: Some("GNRL_EV_VIRUS_FOUND".into()),
            event_type_display_name: None,
            descr: Some("found".into()),
            locid: None,
            rise_time: None,
            rise_time_ms: None,
            par: Default::default(),
            virus_name: None,
            object_name: None,
            truncated: false,
            received_at: time::macros::datetime!(2026-12-05 10:00 UTC),
            source_address: "10.0.0.1".into(),
        };
        let now = time::macros::datetime!(2026-12-05 10:01 UTC);
        let a = device_event(&e, now);
        let b = device_event(&e, now + time::Duration::hours(1));
        assert_eq!(a["Id"], b["Id"], "resends carry the same Id");
        assert_eq!(a["EntityId"], "IMEI-1");
        assert_eq!(a["EventType"], 3);
        assert_eq!(a["OrchTimestampUtc"], "2026-12-05T10:00:00Z");
        let other = EventRecord {
            event_id: "evt-2".into(),
            ..e
        };
        assert_ne!(device_event(&other, now)["Id"], a["Id"]);
    }
}
