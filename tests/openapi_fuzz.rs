//! A property-based run of Schemathesis, a standard OpenAPI fuzzer, against the real server's
//! `/api/v1/openapi.json` over HTTPS: no 5xx but the documented 503, every status documented,
//! every response of the declared content type and matching its schema. `scripts/test` installs
//! Schemathesis from PyPI.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let server = TestServer::start_with(|c| {
        c.admin.requests_per_second_per_token = 0;
        c.admin.requests_per_second = 0;
    })
    .await;
    let api = server.api().await;
    // An API token (a logout would end a session token mid-run).
    let token = api
        .post("/tokens", json!({"name": "fuzzer", "days": 1}))
        .await
        .ok()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Objects for the operations that address one, so that they are reached too.
    api.post("/devices", json!({"device_id": "IMEI-FUZZ"}))
        .await
        .ok();
    let cert = generated_cert(server.dir.path());
    let schema = format!(
        "https://127.0.0.1:{}/api/v1/openapi.json",
        server.app.admin_addr().port()
    );
    let run = tokio::process::Command::new("schemathesis")
        .args(["run", &schema])
        .args(["--tls-verify", cert.to_str().unwrap()])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // Operations that would end the run's own credentials.
        .args(["--exclude-path", "/api/v1/logout"])
        .args(["--exclude-path-regex", "^/api/v1/tokens/"])
        // A body that is a map of the recursive typed values: this Schemathesis version cannot
        // generate one at times ("a `not` whose complement is not spelled out"); tests/api.rs
        // covers the operation.
        .args(["--exclude-operation-id", "queue_settings"])
        .args(["--max-examples", "50", "--seed", "20261205"])
        // Not the coverage phase: its malformed header values are refused by the HTTP parser,
        // which closes the connection (a transport error, not an answer of the API), and it
        // trips over itself at times in this version.
        .args(["--phases", "examples,fuzzing"])
        .args(["--workers", "2"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("schemathesis is installed (scripts/test installs it with pip)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{report}");
    assert!(report.contains("passed"), "{report}");
    assert!(!report.contains("Unresolvable references"), "{report}");
    server.stop().await;
}
