//! Seed 002's intake webhook (W1–W9) against the real server over HTTPS, on the backend under test:
//! login for a token of the intake's own audience, one event per call stored once per `Id` and
//! acknowledged only when stored, Table 1 read leniently but typed, and refusals that store nothing.

mod common;

use std::time::Duration;

use common::*;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};

const ID: &str = "955f8b51-00a4-4807-b723-a3e5c547da01";

/// An API client at the admin port's root (the intake paths are outside `/api/v1`).
fn intake(server: &TestServer) -> common::api::Api {
    let mut api = server.api_anonymous();
    api.base = api.base.trim_end_matches("/api/v1").to_string();
    api
}

async fn integration_account(server: &TestServer) {
    let admin = server.api().await;
    admin
        .post(
            "/admins",
            json!({"name": "orchestrator", "role": "integration", "password": "integration password"}),
        )
        .await
        .ok();
}

async fn login(api: &common::api::Api) -> String {
    let answer = api
        .post(
            "/api/Account",
            json!({"UserName": "orchestrator", "Password": "integration password"}),
        )
        .await
        .ok();
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["Token"]);
    answer["Token"].as_str().unwrap().to_string()
}

async fn stored(server: &TestServer) -> Vec<Value> {
    let admin = server.api().await;
    admin.get("/intake-events").await.ok()["list"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn intake_login_issues_tokens_for_the_intake_alone() {
    let server = TestServer::start().await;
    integration_account(&server).await;
    let api = intake(&server);
    // W1: a JWT with three base64url parts and an HS* algorithm.
    let token = login(&api).await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine as _;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");
    // W2: wrong credentials, and an account without the right, get no token.
    api.post(
        "/api/Account",
        json!({"UserName": "orchestrator", "Password": "wrong"}),
    )
    .await
    .refused(401);
    let password =
        std::fs::read_to_string(server.dir.path().join("initial-admin-password")).unwrap();
    let admin = server.api().await;
    admin
        .post(
            "/admins",
            json!({"name": "reader", "role": "auditor", "password": "auditor password!"}),
        )
        .await
        .ok();
    api.post(
        "/api/Account",
        json!({"UserName": "reader", "Password": "auditor password!"}),
    )
    .await
    .refused(403);
    // Names in any case; the administrator (who has Write on events) may log in too.
    api.post(
        "/api/Account",
        json!({"username": "admin", "PASSWORD": password.trim()}),
    )
    .await
    .ok();
    // An intake token does not open the admin API, nor an admin token the intake.
    api.with_token(&token)
        .get("/api/v1/devices")
        .await
        .refused(401);
    let admin_token = admin.token.clone().unwrap();
    api.with_token(&admin_token)
        .post("/api/OrchEvents", json!({"Id": ID}))
        .await
        .refused(401);
    // Expired: 401 from the second it expires; a disabled account's tokens stop at once.
    let sender = api.with_token(&token);
    sender.post("/api/OrchEvents", json!({"Id": ID})).await.ok();
    server.app.domain.clock().advance(Duration::from_secs(3600));
    sender
        .post("/api/OrchEvents", json!({"Id": ID}))
        .await
        .refused(401);
    let fresh = login(&api).await;
    let admin = server.api().await;
    admin
        .put("/admins/orchestrator", json!({"disabled": 1}))
        .await
        .ok();
    api.with_token(&fresh)
        .post("/api/OrchEvents", json!({"Id": ID}))
        .await
        .refused(401);
    server.stop().await;
}

#[tokio::test]
async fn events_are_stored_once_with_every_field_and_refusals_store_nothing() {
    let server = TestServer::start().await;
    integration_account(&server).await;
    let anonymous = intake(&server);
    let api = anonymous.with_token(&login(&anonymous).await);

    // W3, W4: no token, garbage, a wrong signature.
    anonymous
        .post("/api/OrchEvents", json!({"Id": ID}))
        .await
        .refused(401);
    anonymous
        .with_token("garbage")
        .post("/api/OrchEvents", json!({"Id": ID}))
        .await
        .refused(401);
    let forged = {
        let token = api.token.clone().unwrap();
        let (head, _) = token.rsplit_once('.').unwrap();
        format!("{head}.c2lnbmF0dXJl")
    };
    anonymous
        .with_token(&forged)
        .post("/api/OrchEvents", json!({"Id": ID}))
        .await
        .refused(401);
    // W9 and the limits: not JSON, wrong content type, too large, not an object, bad fields.
    let raw = |body: &'static str, content_type: &'static str| {
        api.request(Method::POST, "/api/OrchEvents")
            .header(CONTENT_TYPE, content_type)
            .body(body)
    };
    api.send(raw("{nope", "application/json"))
        .await
        .refused(400);
    api.send(raw(r#"{"Id": "x"}"#, "text/plain"))
        .await
        .refused(415);
    let big = format!(r#"{{"Id": "{ID}", "Text": "{}"}}"#, "x".repeat(1024 * 1024));
    api.send(
        api.request(Method::POST, "/api/OrchEvents")
            .header(CONTENT_TYPE, "application/json")
            .body(big),
    )
    .await
    .refused(413);
    for bad in [
        json!([{"Id": ID}]),
        json!({"Text": "no id"}),
        json!({"Id": "not-a-guid"}),
        json!({"Id": ID, "EventType": 5}),
        json!({"Id": ID, "Text": 7}),
        json!({"Id": ID, "OrchTimestampUtc": "22/05/2022"}),
    ] {
        api.post("/api/OrchEvents", bad).await.refused(400);
    }
    assert!(stored(&server).await.is_empty(), "nothing stored");

    // W5, W7, W8: every field round-trips; names in any case; nulls; enum names.
    let full = json!({
        "Id": ID.to_uppercase(), "Event": 101, "EntityId": "agent-7", "UserId": "u-1",
        "OrchTimestampUtc": "2022-05-22T15:33:27.1234567", "OperationKey": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "Signature": "c2ln", "WorkerAdminName": "robot-admin", "Text": "Robot started",
        "EventType": 1, "IP": "::ffff:192.168.1.159", "TenantId": "t-1",
        "EntityData": "{\"a\": 1}", "SendedAt": "2022-05-22T15:33:28+05:00"
    });
    assert_eq!(
        api.post("/api/OrchEvents", full.clone()).await.ok(),
        json!({})
    );
    // A resend answers 200 and stores nothing more.
    assert_eq!(api.post("/api/OrchEvents", full).await.ok(), json!({}));
    api.post(
        "/api/OrchEvents",
        json!({"id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "event": "Login",
               "eventtype": "SecurityIncident", "operationKey": null, "text": null}),
    )
    .await
    .ok();
    api.post(
        "/api/OrchEvents",
        json!({"Id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "Event": null, "EventType": null}),
    )
    .await
    .ok();
    let rows = stored(&server).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let first = rows.iter().find(|r| r["Id"] == ID).unwrap();
    for (key, want) in [
        ("Event", json!(101)),
        ("EntityId", json!("agent-7")),
        ("UserId", json!("u-1")),
        // Kept to the microsecond, what both databases store.
        ("OrchTimestampUtc", json!("2022-05-22T15:33:27.123456Z")),
        (
            "OperationKey",
            json!("0f8fad5b-d9cb-469f-a165-70867728950e"),
        ),
        ("Signature", json!("c2ln")),
        ("WorkerAdminName", json!("robot-admin")),
        ("Text", json!("Robot started")),
        ("EventType", json!(1)),
        ("IP", json!("::ffff:192.168.1.159")),
        ("TenantId", json!("t-1")),
        ("EntityData", json!("{\"a\": 1}")),
        ("SendedAt", json!("2022-05-22T10:33:28Z")),
        ("account", json!("orchestrator")),
    ] {
        assert_eq!(first[key], want, "{key}: {first}");
    }
    let named = rows.iter().find(|r| r["EventName"] == "Login").unwrap();
    assert_eq!(named["EventType"], 3);
    assert!(named["OperationKey"].is_null());
    // The bus carries them, for the export sinks.
    let bus = server.app.store.bus_after(0, 1000).await.unwrap();
    assert_eq!(
        bus.iter().filter(|r| r.topic == "intake.event").count(),
        3,
        "one bus entry per stored event"
    );
    server.stop().await;
}

#[tokio::test]
async fn unauthenticated_intake_when_configured() {
    // W6.
    let server = TestServer::start_with(|c| c.intake.require_auth = false).await;
    let api = intake(&server);
    api.post("/api/OrchEvents", json!({"Id": ID})).await.ok();
    let rows = stored(&server).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["account"].is_null());
    server.stop().await;
}

#[tokio::test]
async fn a_sender_in_another_process_logs_in_and_resends_safely() {
    let server = TestServer::start().await;
    integration_account(&server).await;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = tokio::process::Command::new("python3")
        .arg(fixtures.join("intake_sender.py"))
        .arg(format!(
            "https://127.0.0.1:{}",
            server.app.admin_addr().port()
        ))
        .arg(generated_cert(server.dir.path()))
        .args(["orchestrator", "integration password"])
        .arg(fixtures.join("intake_events.json"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let statuses: Vec<&str> = text.lines().map(|l| &l[..3]).collect();
    assert_eq!(
        statuses,
        vec!["401", "200", "401", "200", "200", "200"],
        "{text}"
    );
    let rows = stored(&server).await;
    assert_eq!(rows.len(), 2, "the resent Id is stored once");
    server.stop().await;
}
