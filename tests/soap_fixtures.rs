//! Fixture tests of the SOAP codec: wire documents and their typed values side by side.
//!
//! For a fixture `NAME` under `tests/fixtures/soap/`:
//! - `NAME.request.xml` is decoded; the outcome must equal `NAME.request.json` (a `Decoded`
//!   in JSON, or `{"Fault": ...}`), and a decoded request must survive the client encoder.
//! - `NAME.response.json` (a `Response`, or `{"Fault": ...}`) is encoded with the request's
//!   context (or the default one); the bytes must equal `NAME.response.xml`, and the client
//!   decoder must read them back to the same value.
//!
//! `UPDATE_FIXTURES=1 cargo test --test soap_fixtures` rewrites the `.request.json` and
//! `.response.xml` files from the current code; review the diff before committing.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use mobile_admin::soap::{
    decode_request, decode_response, encode_fault, encode_request, encode_response, ClientError,
    Decoded, Fault, Limits, MessageContext, Response,
};
use serde_json::json;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/soap")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1")
}

/// Serialised directly (not through `serde_json::Value`, which would widen `f32`s and sort keys).
fn outcome_json(outcome: &Result<Decoded, Fault>) -> String {
    let mut s = match outcome {
        Ok(d) => serde_json::to_string_pretty(d).unwrap(),
        Err(f) => serde_json::to_string_pretty(&json!({ "Fault": f })).unwrap(),
    };
    s.push('\n');
    s
}

fn outcome_from_json(v: serde_json::Value) -> Result<Decoded, Fault> {
    match v.get("Fault") {
        Some(f) => Err(serde_json::from_value(f.clone()).expect("Fault JSON")),
        None => Ok(serde_json::from_value(v).expect("Decoded JSON")),
    }
}

fn check(name: &str) {
    let base = dir().join(name);
    let path = |ext: &str| base.with_file_name(format!("{name}.{ext}"));
    let limits = Limits::default();
    let mut ctx = MessageContext::default();
    let mut checked = false;

    let request_xml = path("request.xml");
    if request_xml.exists() {
        checked = true;
        let input = fs::read(&request_xml).unwrap();
        let outcome = decode_request(&input, &limits);
        let json_path = path("request.json");
        if updating() {
            fs::write(&json_path, outcome_json(&outcome)).unwrap();
        } else {
            let text = fs::read_to_string(&json_path)
                .unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
            let expected = outcome_from_json(serde_json::from_str(&text).unwrap());
            assert_eq!(outcome, expected, "{name}: decoded request");
        }
        if let Ok(decoded) = &outcome {
            ctx = *decoded.ctx();
        }
        // The client encoder writes what the server decoder reads. Decoding keeps details
        // that are not written back (sub-second times, `odd_fields`), so the check is that
        // encoding is a fixed point from the first re-encoding on.
        if let Ok(Decoded::Ok { ctx, request }) = &outcome {
            let first = encode_request(ctx, request);
            match decode_request(&first, &limits) {
                Ok(Decoded::Ok {
                    ctx: ctx2,
                    request: request2,
                }) => {
                    assert_eq!(&ctx2, ctx, "{name}: context after client re-encoding");
                    assert_eq!(
                        String::from_utf8(encode_request(&ctx2, &request2)).unwrap(),
                        String::from_utf8(first).unwrap(),
                        "{name}: client re-encoding"
                    );
                }
                other => panic!("{name}: client re-encoding decoded as {other:?}"),
            }
        }
    }

    let response_json = path("response.json");
    if response_json.exists() {
        checked = true;
        let value: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&response_json).unwrap()).unwrap();
        let reply: Result<Response, Fault> = match value.get("Fault") {
            Some(f) => Err(serde_json::from_value(f.clone()).expect("Fault JSON")),
            None => Ok(serde_json::from_value(value).expect("Response JSON")),
        };
        let bytes = match &reply {
            Ok(resp) => encode_response(&ctx, resp),
            Err(fault) => encode_fault(&ctx, fault),
        };
        let xml_path = path("response.xml");
        if updating() {
            fs::write(&xml_path, &bytes).unwrap();
        } else {
            let expected = fs::read_to_string(&xml_path)
                .unwrap_or_else(|e| panic!("{}: {e}", xml_path.display()));
            assert_eq!(
                String::from_utf8(bytes.clone()).unwrap(),
                expected,
                "{name}: encoded response"
            );
        }
        let back = decode_response(&bytes, &limits);
        match reply {
            Ok(resp) => assert_eq!(back, Ok((ctx, resp)), "{name}: client decoding"),
            Err(fault) => assert_eq!(back, Err(ClientError::Fault { fault }), "{name}"),
        }
    }
    assert!(checked, "fixture {name} has no files");
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        const ALL: &[&str] = &[$(stringify!($name)),*];
    };
}

fixtures! {
    session_begin,
    session_begin_old,
    session_begin_old_version,
    heartbeat_appendix,
    heartbeat_no_sync,
    heartbeat_settings_put,
    heartbeat_subscriptions,
    heartbeat_unknown_session,
    heartbeat_prefixes,
    heartbeat_nil_and_unknown,
    put_result_settings,
    put_result_hash,
    put_result_app_info,
    put_result_app_info_old,
    put_result_app_state,
    put_result_error,
    put_result_string_array,
    put_result_empty_data,
    put_events,
    put_events_old,
    get_file_info,
    get_file_info_missing,
    get_next_file_chunk,
    get_next_file_chunk_end,
    session_end,
    invalid_protocol_version,
    invalid_duplicate_name,
    invalid_missing_session,
    invalid_unknown_value_type,
    fault_unknown_operation,
    fault_malformed,
    fault_missing_body,
    fault_doctype,
    fault_two_operations,
}

/// Every file in the fixture directory belongs to a listed fixture.
#[test]
fn all_fixture_files_are_checked() {
    let listed: BTreeSet<&str> = ALL.iter().copied().collect();
    for entry in fs::read_dir(dir()).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let stem = file.split('.').next().unwrap().to_owned();
        assert!(
            listed.contains(stem.as_str()),
            "unlisted fixture file {file}"
        );
    }
}
