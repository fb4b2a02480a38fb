//! The admin REST API over real HTTPS against the real server, on the backend under test: seed
//! 001's conventions (statuses with their fatal bodies, no side effect after a refusal, soft
//! errors, 0/1 flags, list envelopes, repeated keys, size limits, cookie and Bearer auth, token
//! rules, 403 per role, rate limits) and every resource.

mod common;

use std::time::Duration;

use common::*;
use reqwest::header::{ALLOW, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};

/// The ids of a list answer's items under `key`, after checking its envelope.
fn listed(body: &Value, key: &str) -> Vec<Value> {
    let list = body["list"].as_array().expect("a list");
    assert_eq!(body["count"], list.len() as u64);
    assert!(body["count"].as_u64().unwrap() <= body["limit"].as_u64().unwrap());
    assert!(body["total_count"].as_u64().unwrap() >= list.len() as u64);
    assert!(body.get("max_count").is_some(), "max_count is always there");
    assert!(body.get("offset").is_some());
    list.iter().map(|item| item[key].clone()).collect()
}

#[tokio::test]
async fn every_refusal_has_its_status_and_fatal_body_and_changes_nothing() {
    let server = TestServer::start().await;
    let anonymous = server.api_anonymous();
    let api = server.api().await;

    // 401: no token, garbage, a token that is not ours.
    anonymous.get("/devices").await.refused(401);
    anonymous
        .with_token("garbage")
        .get("/devices")
        .await
        .refused(401);
    anonymous
        .with_token("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
        .get("/devices")
        .await
        .refused(401);
    // 404: unknown route, unknown object.
    api.get("/nothing-here").await.refused(404);
    api.get("/groups/999").await.refused(404);
    api.get("/devices/NOPE").await.refused(404);
    // 405 with Allow.
    let answer = api.send(api.request(Method::PATCH, "/groups")).await;
    let allow = answer.headers[ALLOW].to_str().unwrap().to_string();
    answer.refused(405);
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    api.delete("/stats").await.refused(405);
    // 415: not JSON.
    let answer = api
        .send(
            api.request(Method::POST, "/groups")
                .header(CONTENT_TYPE, "text/plain")
                .body(r#"{"parent_id":1,"name":"X"}"#),
        )
        .await;
    answer.refused(415);
    // 400: malformed JSON, wrong types, unknown fields, bad names, a boolean for a flag.
    let raw = api
        .request(Method::POST, "/groups")
        .header(CONTENT_TYPE, "application/json")
        .body("{not json");
    api.send(raw).await.refused(400);
    api.post("/groups", json!({"parent_id": "1", "name": "X"}))
        .await
        .refused(400);
    api.post("/groups", json!({"parent_id": 1, "name": "X", "extra": 1}))
        .await
        .refused(400);
    api.post("/groups", json!({"parent_id": 1, "name": " padded"}))
        .await
        .refused(400);
    let policy = |locked: Value| json!({"path": "A/B", "value": {"type": "int", "value": 1}, "locked": locked});
    for flag in [json!(true), json!(false), json!(2), json!("1")] {
        api.post("/groups/1/policy", policy(flag))
            .await
            .refused(400);
    }
    api.post(
        "/groups/1/policy",
        json!({"path": "A/B", "value": {"type": "bool", "value": true}, "locked": 1}),
    )
    .await
    .refused(400);
    api.get("/devices?limit=1001").await.refused(400);
    api.get("/devices?limit=0").await.refused(400);
    api.get("/devices?infected=true").await.refused(400);
    api.get("/devices?status=gone").await.refused(400);
    api.get("/groups/abc").await.refused(400);
    api.get("/events?text=%00").await.refused(400);
    api.get("/events?device_id=a%01b").await.refused(400);
    api.get("/devices?search=%00").await.refused(400);
    api.get("/audit?account=%1b").await.refused(400);
    // None of that changed anything.
    let groups = api.get("/groups").await.ok();
    assert_eq!(groups["total_count"], 2, "{groups}");
    assert_eq!(api.get("/groups/1/policy").await.ok()["total_count"], 0);

    // 413: one byte over 1 MiB; exactly 1 MiB is read (and then judged on its content).
    let padded = |size: usize| {
        let head = r#"{"parent_id":1,"name":"Big","pad":""#;
        let tail = r#""}"#;
        let mut body = String::from(head);
        body.push_str(&"x".repeat(size - head.len() - tail.len()));
        body.push_str(tail);
        assert_eq!(body.len(), size);
        body
    };
    let exact = api
        .request(Method::POST, "/groups")
        .header(CONTENT_TYPE, "application/json")
        .body(padded(1024 * 1024));
    let message = api.send(exact).await.refused(400);
    assert!(message.contains("pad"), "{message}");
    let over = api
        .request(Method::POST, "/groups")
        .header(CONTENT_TYPE, "application/json")
        .body(padded(1024 * 1024 + 1));
    api.send(over).await.refused(413);
    // 431: a request head over 8 KiB.
    let big = api
        .request(Method::GET, "/groups")
        .header("x-padding", "y".repeat(9000));
    api.send(big).await.refused(431);
    assert_eq!(api.get("/groups").await.ok()["total_count"], 2);
    server.stop().await;
}

#[tokio::test]
async fn login_sets_the_cookie_and_both_cookie_and_bearer_authenticate() {
    let server = TestServer::start().await;
    let anonymous = server.api_anonymous();
    let password =
        std::fs::read_to_string(server.dir.path().join("initial-admin-password")).unwrap();
    anonymous
        .post(
            "/login",
            json!({"name": "admin", "password": "wrong password"}),
        )
        .await
        .refused(401);
    let response = anonymous
        .client
        .post(format!("{}/login", anonymous.base))
        .json(&json!({"name": "admin", "password": password.trim()}))
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(
        cookie.starts_with(&format!("api_access_token={token};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Secure"),
        "{cookie}"
    );
    assert_eq!(body["kind"], "session");

    let by_cookie = anonymous
        .send(
            anonymous
                .request(Method::GET, "/devices")
                .header(COOKIE, format!("theme=dark; api_access_token={token}")),
        )
        .await;
    by_cookie.ok();
    anonymous.with_token(token).get("/devices").await.ok();

    // Logging out revokes the session token.
    let out = anonymous
        .with_token(token)
        .post("/logout", json!({}))
        .await
        .ok();
    assert_eq!(out["revoked"], 1);
    anonymous
        .with_token(token)
        .get("/devices")
        .await
        .refused(401);
    server.stop().await;
}

#[tokio::test]
async fn tokens_follow_seed_001s_rules() {
    let server = TestServer::start_with(|c| c.admin.max_tokens_per_account = 4).await;
    let api = server.api().await;
    let clock = server.app.domain.clock().clone();

    let created = |name: &'static str, days: u64| {
        let api = &api;
        async move {
            let body = api
                .post("/tokens", json!({"name": name, "days": days}))
                .await
                .ok();
            let token = body["token"].as_str().unwrap().to_string();
            assert!(token.starts_with("eyJ"));
            (body["id"].as_i64().unwrap(), api.with_token(&token))
        }
    };
    let (keeper_id, keeper) = created("keeper", 30).await;
    let (long_id, long) = created("ci", 30).await;
    let (short_id, short) = created("short", 1).await;
    let (third_id, _) = created("third", 2).await;
    long.get("/devices").await.ok();
    api.post("/tokens", json!({"name": "too long", "days": 100000}))
        .await
        .refused(400);
    api.post("/tokens", json!({"name": "", "days": 1}))
        .await
        .refused(400);
    // Revoked tokens still count: the cap is reached (session tokens do not count).
    api.put(&format!("/tokens/{third_id}"), json!({"revoked": 1}))
        .await
        .ok();
    let message = api
        .post("/tokens", json!({"name": "fifth", "days": 1}))
        .await
        .refused(400);
    assert!(message.contains("4 tokens"), "{message}");
    let list = api.get("/tokens").await.ok();
    assert_eq!(list["max_count"], 4);
    assert_eq!(list["total_count"], 5, "four API tokens and the session");
    // Revoked: 401 at once. Deleting before expiry is refused, revoked or not.
    api.put(&format!("/tokens/{long_id}"), json!({"revoked": 1}))
        .await
        .ok();
    long.get("/devices").await.refused(401);
    api.put(&format!("/tokens/{long_id}"), json!({"revoked": 0}))
        .await
        .refused(400);
    api.delete(&format!("/tokens/{long_id}")).await.refused(400);
    api.delete(&format!("/tokens/{short_id}"))
        .await
        .refused(400);

    // The short token expires to the second, with no leeway; so did the session token.
    let expires = api.get("/tokens").await.ok()["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == short_id)
        .unwrap()["expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    let expires =
        time::OffsetDateTime::parse(&expires, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let left = expires - clock.now();
    clock.advance(Duration::from_millis(
        (left.whole_milliseconds() - 2000).max(0) as u64,
    ));
    short.get("/devices").await.ok();
    // Past the expiry, even when the wait above was cut to the millisecond.
    clock.advance(Duration::from_millis(2010));
    short.get("/devices").await.refused(401);
    api.get("/devices").await.refused(401);
    // Once expired, a token can be deleted.
    keeper.delete(&format!("/tokens/{short_id}")).await.ok();
    // A day (and a minute, as it was made a moment after the short one) later the revoked third
    // token has expired too: creating a token deletes it.
    clock.advance(Duration::from_secs(86_400 + 60));
    let states = listed(&keeper.get("/tokens").await.ok(), "state");
    assert!(states.contains(&json!("expired")), "{states:?}");
    keeper
        .post("/tokens", json!({"name": "fresh", "days": 1}))
        .await
        .ok();
    let after = keeper.get("/tokens").await.ok();
    let states = listed(&after, "state");
    assert!(!states.contains(&json!("expired")), "{states:?}");
    let ids = listed(&after, "id");
    assert!(ids.contains(&json!(keeper_id)) && !ids.contains(&json!(third_id)));
    server.stop().await;
}

#[tokio::test]
async fn each_role_gets_403_outside_its_rights_and_nothing_changes() {
    let server = TestServer::start().await;
    let api = server.api().await;
    for (name, role) in [
        ("olga", "operator"),
        ("audrey", "auditor"),
        ("ingrid", "integration"),
    ] {
        let made = api
            .post(
                "/admins",
                json!({"name": name, "role": role, "password": "a long enough password"}),
            )
            .await
            .ok();
        assert_eq!(made["disabled"], 0);
    }
    let as_user = |name: &'static str| {
        let anonymous = server.api_anonymous();
        async move { anonymous.login(name, "a long enough password").await }
    };
    let operator = as_user("olga").await;
    let auditor = as_user("audrey").await;
    let integration = as_user("ingrid").await;

    // The auditor reads and changes nothing.
    auditor.get("/devices").await.ok();
    auditor.get("/groups/1/policy").await.ok();
    auditor
        .post("/groups", json!({"parent_id": 1, "name": "Nope"}))
        .await
        .refused(403);
    auditor
        .post("/devices", json!({"device_id": "IMEI-X"}))
        .await
        .refused(403);
    // The operator manages devices and policy, not accounts.
    operator
        .post("/groups", json!({"parent_id": 1, "name": "Ops"}))
        .await
        .ok();
    operator.get("/admins").await.refused(403);
    operator
        .post(
            "/admins",
            json!({"name": "mallory", "role": "administrator", "password": "a long enough password"}),
        )
        .await
        .refused(403);
    // The integration account only sends events in (intake) and runs product commands.
    integration.get("/events").await.refused(403);
    integration.get("/devices").await.refused(403);
    integration
        .post("/groups", json!({"parent_id": 1, "name": "Int"}))
        .await
        .refused(403);
    // Only the operator's group exists; no account was added.
    let names = listed(&api.get("/groups").await.ok(), "name");
    assert_eq!(
        names,
        vec![json!("Devices"), json!("Unassigned"), json!("Ops")]
    );
    assert_eq!(api.get("/admins").await.ok()["total_count"], 4);
    // Disabling an account stops its tokens.
    api.put("/admins/olga", json!({"disabled": 1})).await.ok();
    operator.get("/devices").await.refused(401);
    api.put("/admins/admin", json!({"disabled": 1}))
        .await
        .refused(400);
    server.stop().await;
}

#[tokio::test]
async fn groups_policy_and_subscriptions_with_soft_errors_and_provenance() {
    let server = TestServer::start().await;
    let api = server.api().await;
    let sales = api
        .post("/groups", json!({"parent_id": 1, "name": "Sales"}))
        .await
        .ok();
    let sales_id = sales["id"].as_i64().unwrap();
    let emea = api
        .post("/groups", json!({"parent_id": sales_id, "name": "EMEA"}))
        .await
        .ok();
    let emea_id = emea["id"].as_i64().unwrap();
    api.post("/groups", json!({"parent_id": sales_id, "name": "EMEA"}))
        .await
        .refused(400);
    let children = api.get(&format!("/groups/{sales_id}/children")).await.ok();
    assert_eq!(listed(&children, "id"), vec![json!(emea_id)]);
    let renamed = api
        .put(&format!("/groups/{emea_id}"), json!({"name": "Europe"}))
        .await
        .ok();
    assert_eq!(renamed["name"], "Europe");
    api.put(
        &format!("/groups/{sales_id}"),
        json!({"parent_id": emea_id}),
    )
    .await
    .refused(400);

    // A locked row at the parent, an overriding one at the child: the parent's lock wins.
    let parent_row = api
        .post(
            &format!("/groups/{sales_id}/policy"),
            json!({"path": "Scan/Level", "value": {"type": "int", "value": 3}, "locked": 1}),
        )
        .await
        .ok();
    assert_eq!(
        parent_row["error_list"][0]["code"],
        "PENDING_NEXT_HEARTBEAT"
    );
    let child_row = api
        .post(
            &format!("/groups/{emea_id}/policy"),
            json!({"path": "Scan/Level", "value": {"type": "int", "value": 1}, "locked": 1}),
        )
        .await
        .ok();
    assert_eq!(
        child_row["error_list"],
        json!([{"type": "POLICY", "code": "SHADOWED_BY_ANCESTOR_LOCK"}])
    );
    // Every wire type survives a row and the effective policy.
    let values = [
        json!({"type": "bool", "value": 1}),
        json!({"type": "long", "value": 1099511627776i64}),
        json!({"type": "double", "value": 2.5}),
        json!({"type": "string", "value": "text"}),
        json!({"type": "date", "value": "2026-12-05"}),
        json!({"type": "datetime", "value": "2026-12-05T10:00:00Z"}),
        json!({"type": "binary", "value": "AAH/"}),
        json!({"type": "array", "value": [{"type": "string", "value": "one"}, {"type": "int", "value": 2}]}),
    ];
    for (n, value) in values.iter().enumerate() {
        api.post(
            &format!("/groups/{emea_id}/policy"),
            json!({"path": format!("Mixed/V{n}"), "value": value, "locked": 1}),
        )
        .await
        .ok();
    }
    let effective = api
        .get(&format!("/groups/{emea_id}/effective-policy"))
        .await
        .ok();
    let find = |path: &str| {
        effective["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"] == path)
            .unwrap()
            .clone()
    };
    let level = find("Scan/Level");
    assert_eq!(level["group_id"], sales_id);
    assert_eq!(level["value"], json!({"type": "int", "value": 3}));
    assert_eq!(level["shadowed"], json!([emea_id]));
    for (n, value) in values.iter().enumerate() {
        assert_eq!(&find(&format!("Mixed/V{n}"))["value"], value);
    }
    // Row CRUD.
    let row_id = child_row["id"].as_i64().unwrap();
    let path = format!("/groups/{emea_id}/policy/{row_id}");
    assert_eq!(api.get(&path).await.ok()["locked"], 1);
    let updated = api
        .put(
            &path,
            json!({"path": "Scan/Level", "value": {"type": "int", "value": 2}, "locked": 0}),
        )
        .await
        .ok();
    assert_eq!(updated["locked"], 0);
    api.delete(&path).await.ok();
    api.get(&path).await.refused(404);

    // Subscriptions.
    let added = api
        .post(
            &format!("/groups/{sales_id}/subscriptions"),
            json!({"severity": 4, "event_type": "GNRL_EV_VIRUS_FOUND"}),
        )
        .await
        .ok();
    assert!(added["audit_id"].is_i64());
    let again = api
        .post(
            &format!("/groups/{sales_id}/subscriptions"),
            json!({"severity": 4, "event_type": "GNRL_EV_VIRUS_FOUND"}),
        )
        .await
        .ok();
    assert!(again["audit_id"].is_null());
    let subs = api
        .get(&format!("/groups/{sales_id}/subscriptions"))
        .await
        .ok();
    assert_eq!(subs["total_count"], 1);
    api.delete(&format!(
        "/groups/{sales_id}/subscriptions/4/GNRL_EV_VIRUS_FOUND"
    ))
    .await
    .ok();
    assert_eq!(
        api.get(&format!("/groups/{sales_id}/subscriptions"))
            .await
            .ok()["total_count"],
        0
    );
    // A group with children is not deleted; an empty one is.
    api.delete(&format!("/groups/{sales_id}"))
        .await
        .refused(400);
    api.delete(&format!("/groups/{emea_id}")).await.ok();
    api.delete(&format!("/groups/{sales_id}")).await.ok();
    server.stop().await;
}

#[tokio::test]
async fn devices_are_listed_filtered_paged_and_managed() {
    let server = TestServer::start().await;
    let api = server.api().await;
    let sales = api
        .post("/groups", json!({"parent_id": 1, "name": "Sales"}))
        .await
        .ok()["id"]
        .as_i64()
        .unwrap();
    for i in 0..25 {
        let group = if i % 2 == 0 { sales } else { 2 };
        api.post(
            "/devices",
            json!({"device_id": format!("IMEI-{i:03}"), "group_id": group, "display_name": format!("Phone {i}")}),
        )
        .await
        .ok();
    }
    api.post("/devices", json!({"device_id": "IMEI-000"}))
        .await
        .refused(400);
    // A device that connected and reported a virus.
    let mut dev = server.device("IMEI-LIVE", "pw").await;
    dev.begin().await.unwrap();
    assert!(dev
        .put_events(vec![event(1, "GNRL_EV_VIRUS_FOUND")])
        .await
        .is_none());
    let h = hashes(1, 2, 3, 4, 5);
    dev.sync(&h, "G").await;

    // Paging walks the whole list once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = api
            .get(&format!("/devices?limit=7&offset={offset}"))
            .await
            .ok();
        assert_eq!(page["total_count"], 26);
        assert_eq!(page["offset"], offset);
        let ids = listed(&page, "device_id");
        if ids.is_empty() {
            break;
        }
        offset += ids.len();
        seen.extend(ids);
    }
    assert_eq!(seen.len(), 26);
    seen.sort_by_key(|v| v.to_string());
    seen.dedup();
    assert_eq!(seen.len(), 26);
    // The cursor gives the same walk.
    let first = api.get("/devices?limit=10").await.ok();
    let last_id = first["list"][9]["id"].as_i64().unwrap();
    let next = api
        .get(&format!("/devices?limit=10&after_id={last_id}"))
        .await
        .ok();
    assert_eq!(next["list"][0]["device_id"], "IMEI-010");
    // Filters, with repeated keys.
    let in_sales = api.get(&format!("/devices?group_id={sales}")).await.ok();
    assert_eq!(in_sales["total_count"], 13);
    let both = api
        .get(&format!("/devices?group_id={sales}&group_id=2&limit=1"))
        .await
        .ok();
    // The live device reported the group "G", and is there.
    assert_eq!(both["total_count"], 25);
    assert_eq!(
        api.get("/devices?status=never_seen").await.ok()["total_count"],
        25
    );
    let active = api.get("/devices?status=active").await.ok();
    assert_eq!(listed(&active, "device_id"), vec![json!("IMEI-LIVE")]);
    assert_eq!(
        api.get("/devices?status=active&status=never_seen")
            .await
            .ok()["total_count"],
        26
    );
    assert_eq!(
        api.get("/devices?infected=1").await.ok()["list"][0]["infected"],
        1
    );
    assert_eq!(
        api.get("/devices?search=phone%201").await.ok()["total_count"],
        11
    );
    assert_eq!(
        api.get("/devices?seen_after=2000-01-01T00:00:00Z")
            .await
            .ok()["total_count"],
        1
    );
    assert_eq!(
        api.get("/devices?seen_before=2000-01-01T00:00:00Z")
            .await
            .ok()["total_count"],
        0
    );

    // Move, rename, block: one change; blocked devices get the soft error when moved.
    let moved = api
        .put(
            "/devices/IMEI-LIVE",
            json!({"group_id": sales, "display_name": "Live phone", "blocked": 1}),
        )
        .await
        .ok();
    assert_eq!(moved["group_id"], sales);
    assert_eq!(moved["display_name"], "Live phone");
    assert_eq!(moved["status"], "blocked");
    let codes: Vec<Value> = moved["error_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].clone())
        .collect();
    assert!(codes.contains(&json!("DEVICE_BLOCKED")), "{codes:?}");
    api.put("/devices/IMEI-LIVE", json!({"group_id": 999}))
        .await
        .refused(404);
    api.put("/devices/IMEI-LIVE", json!({"blocked": 0}))
        .await
        .ok();
    api.put("/devices/IMEI-LIVE", json!({})).await.refused(400);

    // What it reported, its sync, its effective policy, its settings.
    let info = api.get("/devices/IMEI-LIVE/app-info").await.ok();
    assert_eq!(info["fields"]["product_name"], "KAVMOBILE");
    api.get("/devices/IMEI-LIVE/app-state").await.ok();
    let sync = api.get("/devices/IMEI-LIVE/sync").await.ok();
    assert_eq!(sync["info_hash"], hex::encode([1u8; 16]));
    assert_eq!(sync["policy_current"], 1);
    api.post(
        "/groups/1/policy",
        json!({"path": "New/Rule", "value": {"type": "int", "value": 1}, "locked": 1}),
    )
    .await
    .ok();
    let sync = api.get("/devices/IMEI-LIVE/sync").await.ok();
    assert_eq!(
        sync["policy_current"], 0,
        "the change waits for the next sync"
    );
    // The block ended the device's session: it opens another.
    dev.begin().await.unwrap();
    dev.sync(&h, "G").await;
    let sync = api.get("/devices/IMEI-LIVE/sync").await.ok();
    assert_eq!(sync["policy_current"], 1);
    api.get("/devices/IMEI-LIVE/effective-policy").await.ok();
    let settings = api.get("/devices/IMEI-LIVE/settings").await.ok();
    assert!(settings["reported"].is_object());
    let queued = api
        .put(
            "/devices/IMEI-LIVE/settings",
            json!({"changes": {"Scan": {"type": "params", "value": {"Level": {"type": "int", "value": 4}}}}}),
        )
        .await
        .ok();
    assert_eq!(queued["error_list"][0]["code"], "PENDING_NEXT_HEARTBEAT");
    assert_eq!(
        queued["pending"]["Scan"]["value"]["Level"],
        json!({"type": "int", "value": 4})
    );
    // Reset and delete.
    let reset = api.post("/devices/IMEI-LIVE/reset", json!({})).await.ok();
    assert_eq!(reset["enrolled"], 0);
    api.delete("/devices/IMEI-LIVE").await.ok();
    api.get("/devices/IMEI-LIVE").await.refused(404);
    let stats = api.get("/stats").await.ok();
    assert_eq!(stats["devices"], 25);
    assert_eq!(stats["never_seen"], 25);
    server.stop().await;
}

#[tokio::test]
async fn devices_preregistered_with_a_password_log_in_with_it_alone() {
    let server = TestServer::start_with(|c| {
        c.protocol.enrolment = mobile_admin::device::EnrolmentMode::Closed;
    })
    .await;
    let api = server.api().await;
    api.post("/devices", json!({"device_id": "IMEI-PW", "password": ""}))
        .await
        .refused(400);
    let made = api
        .post(
            "/devices",
            json!({"device_id": "IMEI-PW", "password": "issued-secret"}),
        )
        .await
        .ok();
    assert_eq!(made["enrolled"], 1);
    let mut wrong = server.device("IMEI-PW", "guess").await;
    assert_eq!(wrong.begin().await.unwrap_err().code, 1184);
    let mut right = server.device("IMEI-PW", "issued-secret").await;
    right.begin().await.unwrap();
    // Without a password, the first login sets it.
    api.post("/devices", json!({"device_id": "IMEI-TOFU"}))
        .await
        .ok();
    let mut first = server.device("IMEI-TOFU", "chosen").await;
    first.begin().await.unwrap();
    let mut second = server.device("IMEI-TOFU", "other").await;
    assert_eq!(second.begin().await.unwrap_err().code, 1184);
    // The password never shows: not in the device, not in the audit trail.
    let audit = api.get("/audit?object_id=IMEI-PW").await;
    assert!(!audit.text.contains("issued-secret"), "{}", audit.text);
    server.stop().await;
}

#[tokio::test]
async fn events_are_filtered_tailed_and_exported_and_audit_is_kept() {
    let server = TestServer::start().await;
    let api = server.api().await;
    let mut a = server.device("IMEI-EV-A", "pw").await;
    a.begin().await.unwrap();
    let mut b = server.device("IMEI-EV-B", "pw").await;
    b.begin().await.unwrap();
    let mut virus = event(1, "GNRL_EV_VIRUS_FOUND");
    virus.body.descr = Some("=cmd|' /C calc'!A0, found".into());
    assert!(a
        .put_events(vec![virus, event(2, "APP_STARTED")])
        .await
        .is_none());
    assert!(b.put_events(vec![event(3, "APP_STARTED")]).await.is_none());

    let all = api.get("/events").await.ok();
    assert_eq!(all["total_count"], 3);
    let ids: Vec<i64> = listed(&all, "id")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let of_a = api
        .get("/events?device_id=IMEI-EV-A&event_type=APP_STARTED&event_type=GNRL_EV_VIRUS_FOUND")
        .await
        .ok();
    assert_eq!(of_a["total_count"], 2);
    assert_eq!(
        api.get("/events?device_id=IMEI-EV-A&device_id=IMEI-EV-B")
            .await
            .ok()["total_count"],
        3
    );
    assert_eq!(api.get("/events?text=CALC").await.ok()["total_count"], 1);
    assert_eq!(api.get("/events?group_id=2").await.ok()["total_count"], 3);
    assert_eq!(api.get("/events?group_id=1").await.ok()["total_count"], 0);
    assert_eq!(
        api.get("/events?from=2999-01-01T00:00:00Z").await.ok()["total_count"],
        0
    );
    api.get("/events?from=yesterday").await.refused(400);
    // Tailing: oldest first after the cursor.
    let smallest = *ids.last().unwrap();
    let tail = api.get(&format!("/events?after_id={smallest}")).await.ok();
    let tail_ids: Vec<i64> = listed(&tail, "id")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(tail_ids.len(), 2);
    assert!(tail_ids.windows(2).all(|w| w[0] < w[1]));

    // The CSV download.
    let answer = api.get("/events/export.csv?device_id=IMEI-EV-A").await;
    assert_eq!(answer.status, 200);
    assert!(answer.headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let lines: Vec<&str> = answer.text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", answer.text);
    assert!(lines[0].starts_with("id,received_at,device_id"));
    assert!(
        answer.text.contains("\"'=cmd|' /C calc'!A0, found\""),
        "{}",
        answer.text
    );

    // Audit: the group made through the API names the account and the token.
    api.post("/groups", json!({"parent_id": 1, "name": "Audited"}))
        .await
        .ok();
    let audit = api.get("/audit?object_kind=group").await.ok();
    let entry = &audit["list"][0];
    assert_eq!(entry["account"], "admin");
    assert!(entry["token"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(entry["after"]["name"], "Audited");
    assert!(entry["before"].is_null());
    let stats = api.get("/stats").await.ok();
    assert_eq!(stats["infected"], 1);
    let hours: i64 = stats["events_per_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["events"].as_i64().unwrap())
        .sum();
    assert_eq!(hours, 3);
    server.stop().await;
}

#[tokio::test]
async fn update_files_are_uploaded_atomically_listed_and_deleted() {
    let server = TestServer::start_with(|c| c.admin.max_upload_bytes = 100_000).await;
    let api = server.api().await;
    let content: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let uploaded = api
        .send(
            api.request(Method::POST, "/update-files/bases%2Fav.bin")
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(content.clone()),
        )
        .await
        .ok();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&content))
    };
    assert_eq!(uploaded["sha256"], sha);
    assert_eq!(uploaded["size"], 70_000);
    // Devices download exactly what was uploaded.
    let mut dev = server.device("IMEI-UPD", "pw").await;
    dev.begin().await.unwrap();
    assert_eq!(dev.download("bases/av.bin", 32768).await.unwrap(), content);
    // Too large: refused, and the old file stays whole.
    let big = vec![7u8; 100_001];
    api.send(
        api.request(Method::POST, "/update-files/bases%2Fav.bin")
            .body(big),
    )
    .await
    .refused(413);
    assert_eq!(dev.download("bases/av.bin", 32768).await.unwrap(), content);
    for bad in ["..%2Fescape", "a%2F..%2Fb", "%2Fabs"] {
        api.send(
            api.request(Method::POST, &format!("/update-files/{bad}"))
                .body("x"),
        )
        .await
        .refused(400);
    }
    let listing = api.get("/update-files").await.ok();
    let names = listed(&listing, "name");
    assert_eq!(names, vec![json!("bases"), json!("bases/av.bin")]);
    assert_eq!(listing["list"][0]["is_dir"], 1);
    assert_eq!(listing["list"][1]["sha256"], sha);
    let leftovers = std::fs::read_dir(server.dir.path().join("updates/bases"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
    api.delete("/update-files/bases%2Fav.bin").await.ok();
    api.delete("/update-files/bases%2Fav.bin")
        .await
        .refused(404);
    api.delete("/update-files/bases").await.ok();
    assert_eq!(api.get("/update-files").await.ok()["total_count"], 0);
    server.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_503_with_retry_after() {
    let server = TestServer::start_with(|c| c.admin.requests_per_second_per_token = 3).await;
    let api = server.api().await;
    let mut refused = None;
    for _ in 0..20 {
        let answer = api.get("/groups").await;
        if answer.status == 503 {
            refused = Some(answer);
            break;
        }
    }
    let answer = refused.expect("the limit was reached");
    assert!(answer.headers.contains_key(RETRY_AFTER));
    answer.refused(503);
    // Another token has its own budget.
    let other = server.api().await;
    other.get("/groups").await.ok();
    server.stop().await;
}

#[tokio::test]
async fn health_and_the_documents_need_no_token() {
    let server = TestServer::start().await;
    let anonymous = server.api_anonymous();
    let health = anonymous.get("/health").await.ok();
    assert_eq!(health["status"], "ok");
    // The OpenAPI document is a JSON Schema document, booleans and all.
    let doc: Value = anonymous
        .client
        .get(format!("{}/openapi.json", anonymous.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/devices",
        "/api/v1/tokens/{id}",
        "/api/v1/groups/{id}/effective-policy",
        "/api/v1/events/export.csv",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let page = anonymous
        .client
        .get(anonymous.base.replace("/api/v1", "/api/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    assert!(!html.contains("https://"), "no external resources");
    server.stop().await;
}

/// `/healthz` and `/readyz` answer without a token; readiness needs the schema this build expects.
#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let server = TestServer::start().await;
    let tls = mobile_admin::tls::client_config(&generated_cert(server.dir.path())).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", server.app.admin_addr().port());
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    let health = get("/healthz").await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["schema_version"],
        mobile_admin::store::latest_schema_version()
    );
    // A schema this build does not expect: not ready, with the fatal body and Retry-After.
    let db = server.sql().await;
    let newest = "(SELECT max(version) FROM _sqlx_migrations)";
    db.execute(&format!(
        "UPDATE _sqlx_migrations SET success = false WHERE version = {newest}"
    ))
    .await;
    let refused = get("/readyz").await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["statusCode"], 503);
    assert!(
        body["message"].as_str().unwrap().contains("schema"),
        "{body}"
    );
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    db.execute("UPDATE _sqlx_migrations SET success = true WHERE success = false")
        .await;
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
}
